"""The first-run path of a new user, timed: the README's install command in a fresh virtual
environment with an empty pip cache and an empty cdlm home, then `cdlm predict` from a folder
outside the checkout, then (``--tests``) the README's test command in the same environment.

    python evals/bench_install.py [--tests] [--out evals/results/bench_install.json]

Run it from a clean clone (the install is editable: it installs the checkout it runs in). The
install script prints each step's wall time (`== install: STEP: done in N s`); they are parsed
into the record, with the whole command's time, the time until `cdlm predict` answers and what
it answered. The load average is recorded: on a shared machine it says how busy the cores were.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXT = "Angela Merkel met Emmanuel Macron in Paris."
STEP = re.compile(r"^== install: (.+): done in (\d+) s$")


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, stdout + stderr) of ``cmd``; a failure stops the benchmark."""
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return seconds, res.stdout + res.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", action="store_true", help="Then run the test command too.")
    parser.add_argument("--out", type=Path, default=REPO / "evals/results/bench_install.json")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from cdlm.provenance import stamp
    from cdlm.results import write_results

    root = Path(tempfile.mkdtemp(prefix="cdlm-install-"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}",
        "PYTHON": str(venv / "bin" / "python"),
        "PIP_NO_CACHE_DIR": "1",  # an empty pip cache: every wheel fetched or built anew
        "XDG_CACHE_HOME": str(root / "cache"),  # an empty cdlm home
    }
    env.pop("CDLM_HOME", None)
    load_before = os.getloadavg()
    install_s, log = timed(["bash", "scripts/install.sh"], REPO, env)
    steps = {m[1]: int(m[2]) for line in log.splitlines() if (m := STEP.match(line.strip()))}
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    predict_s, out = timed([str(venv / "bin" / "cdlm"), "predict", TEXT], elsewhere, env)
    answer = json.loads(out.strip().splitlines()[-1])
    record = {
        "install_seconds": round(install_s, 1),
        "install_steps_seconds": steps,
        "first_predict_seconds": round(predict_s, 1),
        "until_first_answer_seconds": round(install_s + predict_s, 1),
        "answer": [(e["text"], e["label"]) for e in answer["entities"]],
        "load_average_before": load_before,
    }
    if args.tests:
        env["CDLM_REQUIRE_DATA"] = "1"
        tests_s, tail = timed([str(venv / "bin" / "python"), "-m", "pytest", "-q"], REPO, env)
        record["tests_seconds"] = round(tests_s, 1)
        record["tests_summary"] = tail.strip().splitlines()[-1]
        record["ci_seconds"] = round(install_s + tests_s, 1)
    record["load_average_after"] = os.getloadavg()
    record["provenance"] = stamp()
    write_results(args.out, record, markdown(record))
    print(json.dumps({k: v for k, v in record.items() if k != "provenance"}, indent=1))


def markdown(r: dict) -> str:
    rows = "\n".join(f"| {step} | {s} |" for step, s in r["install_steps_seconds"].items())
    lines = [
        "# First run: install, first prediction, tests (fresh venv, empty caches)",
        "",
        f"- README install command: **{r['install_seconds']:.0f} s**; first `cdlm predict` "
        f"from a folder outside the checkout: {r['first_predict_seconds']:.0f} s; until the "
        f"first answer: **{r['until_first_answer_seconds'] / 60:.1f} min**",
    ]
    if "tests_seconds" in r:
        lines.append(
            f"- README test command: {r['tests_seconds']:.0f} s ({r['tests_summary']}); both "
            f"commands (what `.ci/run` runs): **{r['ci_seconds'] / 60:.1f} min**"
        )
    p = r["provenance"]
    lines += [
        f"- answer: {r['answer']}",
        f"- load average before / after: {r['load_average_before']} / {r['load_average_after']}",
        f"- command: `{p['command']}`; commit `{p['commit']}`; {p['time']}, {p['machine']}",
        "",
        "| install step | seconds |",
        "|---|---:|",
        rows,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
