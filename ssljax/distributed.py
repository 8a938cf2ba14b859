"""Connecting the processes of a multi-process (multi-host) run, with errors a user can act on.

``jax.distributed.initialize`` aborts the whole process with a C++ stack trace when the processes
disagree (a wrong coordinator address, a different ``num_processes`` in one of them, two processes
with the same id) or one never starts, so every process would die unreadably or wait out a long
timeout. :func:`initialize` first runs a small handshake of its own on the coordinator's port:

* process 0 listens on ``coordinator_address`` and waits for the other ``num_processes - 1``;
* every other process connects (retrying until ``timeout_s``) and sends its ``num_processes`` and
  ``process_id``;
* process 0 checks that all agree and that every id in ``[0, num_processes)`` came exactly once,
  and answers each process ``ok`` or the one-line reason; then the port is released and JAX's own
  coordination service starts on it.

Any failure raises :class:`~ssljax.errors.ConfigError` naming the setting, in every process that
can know about it, within ``timeout_s``.
"""

from __future__ import annotations

import os
import socket
import time

from ssljax.errors import ConfigError

_OK = "ok"


def parse_address(address: str) -> tuple[str, int]:
  """``'host:port'`` -> ``(host, port)``; ConfigError when malformed."""
  host, sep, port = str(address).rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ConfigError(f"distributed.coordinator_address={address!r} must be host:port, "
                      "e.g. 10.0.0.1:1234 (the same value in every process)")
  return host, int(port)


def _send_line(conn: socket.socket, text: str) -> None:
  conn.sendall(text.encode() + b"\n")


def _recv_line(conn: socket.socket) -> str:
  data = b""
  while not data.endswith(b"\n"):
    chunk = conn.recv(4096)
    if not chunk:
      break
    data += chunk
  return data.decode().strip()


def _serve(host: str, port: int, num_processes: int, timeout_s: float) -> None:
  """Process 0's side: gather every other process's (count, id), check them, answer each."""
  server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    server.bind(("", port))
  except OSError as e:
    server.close()
    raise ConfigError(f"distributed.coordinator_address={host}:{port}: process 0 cannot listen "
                      f"on port {port} ({e.strerror}); pick a free port, the same in every "
                      "process") from None
  server.listen(num_processes)
  deadline = time.monotonic() + timeout_s
  peers: list[tuple[socket.socket, int, int]] = []
  problem = None
  try:
    while len(peers) < num_processes - 1:
      server.settimeout(max(0.01, deadline - time.monotonic()))
      try:
        conn, _ = server.accept()
      except TimeoutError:
        seen = sorted(pid for _, pid, _ in peers)
        missing = [i for i in range(1, num_processes) if i not in seen]
        raise ConfigError(
            f"distributed: process 0 waited {timeout_s:g} s (distributed.timeout_s) but "
            f"process(es) {missing} of distributed.num_processes={num_processes} never "
            f"connected to {host}:{port}; start them with the same coordinator_address") from None
      conn.settimeout(max(1.0, deadline - time.monotonic()))
      try:
        count, pid = (int(v) for v in _recv_line(conn).split(","))
      except (ValueError, OSError):
        conn.close()  # Not one of ours (a port scanner, a stale client): ignore it.
        continue
      peers.append((conn, pid, count))
      if count != num_processes:
        problem = (f"distributed.num_processes differs between processes: process 0 has "
                   f"{num_processes}, process {pid} has {count}; use the same value everywhere")
        break
      if not 0 < pid < num_processes or sum(p == pid for _, p, _ in peers) > 1:
        problem = (f"distributed.process_id={pid} is used twice or is out of range; give each "
                   f"process a distinct id in [0, {num_processes}) (0 is the coordinator)")
        break
    for conn, _, _ in peers:
      try:
        _send_line(conn, problem or _OK)
      except OSError:
        pass
  finally:
    for conn, _, _ in peers:
      conn.close()
    server.close()
  if problem:
    raise ConfigError(problem)


def _join(host: str, port: int, num_processes: int, process_id: int, timeout_s: float) -> None:
  """A non-coordinator's side: connect (retrying), send (count, id), wait for the verdict."""
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      conn = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
      break
    except OSError:
      if time.monotonic() >= deadline:
        raise ConfigError(
            f"distributed: process {process_id} could not reach the coordinator at {host}:{port} "
            f"within {timeout_s:g} s (distributed.timeout_s); start process 0 there, with the same "
            "distributed.coordinator_address in every process") from None
      time.sleep(0.2)
  with conn:
    conn.settimeout(max(1.0, deadline - time.monotonic()))
    try:
      _send_line(conn, f"{num_processes},{process_id}")
      verdict = _recv_line(conn)
    except OSError:
      verdict = ""
  if verdict != _OK:
    raise ConfigError(verdict or (
        f"distributed: the coordinator at {host}:{port} gave no answer within {timeout_s:g} s; "
        "is every process started with the same distributed.num_processes?"))


def handshake(address: str, num_processes: int, process_id: int, timeout_s: float) -> None:
  """Checks that all ``num_processes`` processes agree before JAX connects them (see module)."""
  host, port = parse_address(address)
  if process_id == 0:
    _serve(host, port, num_processes, timeout_s)
  else:
    _join(host, port, num_processes, process_id, timeout_s)


def check_settings(dist) -> tuple[int, int, float]:
  """``(num_processes, process_id, timeout_s)`` from ``config.distributed``, validated."""
  try:
    n, pid = int(dist.num_processes), int(dist.process_id)
    timeout_s = float(dist.get("timeout_s", 300.0))
  except (TypeError, ValueError):
    raise ConfigError(
        "distributed.num_processes, process_id and timeout_s must be numbers") from None
  if n < 1:
    raise ConfigError(f"distributed.num_processes={n} must be >= 1")
  if n > 1:
    if not dist.coordinator_address or pid < 0:
      raise ConfigError(
          f"distributed.num_processes={n} needs distributed.coordinator_address=host:port and "
          f"distributed.process_id in [0, {n}) for every process")
    if pid >= n:
      raise ConfigError(f"distributed.process_id={pid} must be < distributed.num_processes={n}")
    parse_address(dist.coordinator_address)
  if not timeout_s > 0:
    raise ConfigError(f"distributed.timeout_s={timeout_s:g} must be > 0")
  return n, pid, timeout_s


def initialize(config) -> None:
  """Connects the processes of a multi-process run when the config or the environment asks.

  ``config.distributed.num_processes > 1``: the handshake above, then ``jax.distributed`` (with
  gloo collectives for CPU processes). ``SSLJAX_DISTRIBUTED=1`` or ``JAX_COORDINATOR_ADDRESS`` in
  the environment: JAX discovers the topology itself (TPU pod slices, SLURM).
  """
  import jax

  n, pid, timeout_s = check_settings(config.distributed)
  if n > 1:
    address = str(config.distributed.coordinator_address)
    handshake(address, n, pid, timeout_s)
    # CPU processes need a collectives backend to run one computation together (GPU/TPU have
    # their own; the setting only affects the CPU client).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=pid,
                               initialization_timeout=int(max(timeout_s, 1)))
  elif os.environ.get("SSLJAX_DISTRIBUTED") == "1" or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
