"""Top floor: ``cdlm serve``, an HTTP service over the model object.

``app`` (the FastAPI routes, request limits, bearer key and Host checks), ``batcher``
(concurrent requests merged into one forward pass) and ``server`` (uvicorn on a socket it binds
itself, so port 0 works and the real port is printed; loopback unless a bearer key is set). Needs
the ``serve`` extra: ``pip install 'cdlm[serve]'``. Nothing is imported here, so importing is
free.
"""
