"""A probe worker process: ``python -m probes.worker``, started by ``probes.pool`` for a share of a
big probe run (``KVMON_PROBE_PROCESSES``). Both ends of the pipe live here: ``ProbeWorker`` starts
the process and reads its answer, ``main`` is the process.

It imports what probing needs and nothing else (about 35 MB, where a copy of the parent's program
would hold every SDK kvmon uses), reads one pickled ``ProbeJob`` from standard input, probes, and
writes the pickled results to standard output. Pickle is safe here: both ends are this program,
over the private pipes of a process it started itself.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass

from azure.core.credentials import TokenCredential

from monitor.config.identity import default_credential
from monitor.config.policy import Vantage
from monitor.config.settings import Settings
from monitor.model import ProbeResult
from probes.options import ProbeOptions
from probes.threads import probe_in_threads

# Exit codes of a worker: what went wrong, without a traceback on the parent's terminal.
EXIT_BAD_JOB = 2
EXIT_PROBE_FAILED = 3


@dataclass(frozen=True)
class ProbeJob:
    hostnames: tuple[str, ...]
    vantage: Vantage
    options: ProbeOptions
    credential: TokenCredential | None  # None: the worker builds its DefaultAzureCredential


class ProbeWorker:
    """One started worker: ``start`` sends the job, ``results`` waits for the answer."""

    def __init__(self, job: ProbeJob) -> None:
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "probes.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        self._job = pickle.dumps(job)
        self._count = len(job.hostnames)

    def results(self) -> list[ProbeResult] | str:
        """The results in the job's order, or why there are none (the worker failed)."""
        out, err = self._process.communicate(self._job)
        if self._process.returncode != 0:
            reason = err.decode("utf-8", "replace").strip().splitlines()
            return f"probe worker process failed (exit code {self._process.returncode}): {reason[-1] if reason else 'no message'}"
        results = pickle.loads(out)
        if not isinstance(results, list) or len(results) != self._count:
            return "probe worker process gave an answer of the wrong shape"
        return results


def main() -> int:
    try:
        job = pickle.loads(sys.stdin.buffer.read())
        if not isinstance(job, ProbeJob):
            raise TypeError(f"expected a ProbeJob, got {type(job).__name__}")
    except Exception as exc:  # whatever arrived, say what and stop
        print(f"kvmon probe worker: not a job ({type(exc).__name__}: {exc})", file=sys.stderr)
        return EXIT_BAD_JOB
    try:
        results = probe_in_threads(
            job.hostnames,
            vantage=job.vantage,
            options=job.options,
            credential=_default_credential() if job.credential is None else job.credential,
        )
    except Exception as exc:
        print(f"kvmon probe worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_PROBE_FAILED
    sys.stdout.buffer.write(pickle.dumps(results))
    sys.stdout.buffer.flush()
    return 0


def _default_credential() -> TokenCredential:
    """The parent's DefaultAzureCredential, built again here from the same environment and
    settings (it holds locks and pipelines, so it does not travel)."""
    credential: TokenCredential = default_credential(Settings.from_environ(os.environ))
    return credential


if __name__ == "__main__":
    # As the importable module, whose ProbeJob is the class pickle finds, not as __main__.
    from probes.worker import main as worker_main

    sys.exit(worker_main())
