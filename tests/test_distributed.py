"""Multi-process settings that disagree end in one clear line per process, within timeout_s."""

import os
import socket
import subprocess
import sys
import threading

import pytest

from ssljax import distributed
from ssljax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _handshakes(settings, timeout_s=10.0):
  """Runs one handshake per (num_processes, process_id) in threads; returns each outcome."""
  address = f"127.0.0.1:{_free_port()}"
  outcomes = [None] * len(settings)

  def one(i, n, pid):
    try:
      distributed.handshake(address, n, pid, timeout_s)
      outcomes[i] = "ok"
    except ConfigError as e:
      outcomes[i] = str(e)

  threads = [threading.Thread(target=one, args=(i, n, pid)) for i, (n, pid) in enumerate(settings)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=timeout_s + 10)
  assert not any(t.is_alive() for t in threads), "a handshake hung past its timeout"
  return outcomes


def test_agreeing_processes_pass():
  assert _handshakes([(3, 0), (3, 1), (3, 2)]) == ["ok", "ok", "ok"]


def test_inconsistent_process_count():
  out = _handshakes([(2, 0), (3, 1)])
  assert all("num_processes differs" in o and "process 1 has 3" in o for o in out), out


def test_duplicate_process_id():
  out = _handshakes([(3, 0), (3, 1), (3, 1)], timeout_s=3.0)
  assert "used twice" in out[0], out
  # The duplicate hears the verdict; the process that came first either hears it too, or (if it
  # was answered before the duplicate arrived) it cannot: every process still ends.
  assert sum("used twice" in o for o in out) >= 2, out


def test_missing_process_and_unreachable_coordinator():
  (alone,) = _handshakes([(3, 0)], timeout_s=1.0)
  assert "[1, 2]" in alone and "never connected" in alone and "timeout_s" in alone
  (lost,) = _handshakes([(2, 1)], timeout_s=1.0)
  assert "could not reach the coordinator" in lost


@pytest.mark.parametrize("address", ["localhost", "host:port", ":1234", "h:99999"])
def test_bad_address(address):
  with pytest.raises(ConfigError, match="host:port"):
    distributed.handshake(address, 2, 1, 1.0)


def _main(*extra):
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), "--config=experiments/barlow.py:runlocal",
         "--workdir=/tmp/ssljax-never-written", *extra]
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


@pytest.mark.slow
def test_main_reports_disagreeing_processes_in_one_line_each():
  address = f"--config.distributed.coordinator_address=127.0.0.1:{_free_port()}"
  procs = [_main(address, f"--config.distributed.process_id={i}",
                 f"--config.distributed.num_processes={n}", "--config.distributed.timeout_s=20")
           for i, n in ((0, 2), (1, 3))]
  for p in procs:
    _, err = p.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert p.returncode == 2, err[-2000:]
    assert len(lines) == 1 and "num_processes differs" in lines[0], err[-2000:]
  assert not os.path.exists("/tmp/ssljax-never-written")
