"""Top floor: ``cdlm serve``, an HTTP service over the model object.

``app`` (the FastAPI routes and request limits), ``batcher`` (concurrent requests merged into
one forward pass) and ``server`` (uvicorn on a socket it binds itself, so port 0 works and the
real port is printed). Needs the ``serve`` extra: ``pip install 'cdlm[serve]'``. Nothing is
imported here, so importing is free.
"""
