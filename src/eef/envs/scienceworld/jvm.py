"""JVMs running ScienceWorld's simulator, shared by many environments, restarted when they die.

The ``scienceworld`` package starts one JVM per ``ScienceWorldEnv`` with an uncapped heap. eef
starts the bundled jar itself behind a py4j gateway with ``-Xmx``, and creates one simulator
object (``PythonInterface``) per environment inside a shared JVM: a JVM takes at most
``envs_per_jvm`` of them and the pool starts another JVM when all are full.

Two properties make the simulator usable for replays:

* **Determinism.** The simulator keeps objects in hash sets keyed by identity hash codes, which
  HotSpot draws from a per-thread random sequence: the same actions listed objects in another
  order, read other temperatures and finished processes a tick apart depending on what the JVM
  had run before. eef's JVMs give every object the same identity hash (:data:`JVM_OPTIONS`),
  so an episode depends on its task and actions alone.
* **Faults.** Every call into a JVM is bounded by ``call_timeout_s``; a call that fails because
  the JVM died, lost its connection or did not answer in time raises :class:`JvmDied`, and the
  pool kills that JVM so that the caller can take a simulator in a new one.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

from py4j import java_gateway
from py4j.java_collections import JavaList
from py4j.java_gateway import GatewayParameters, JavaGateway, find_jar_path
from py4j.protocol import Py4JError, Py4JJavaError
from scienceworld.constants import BASEPATH, JAR_PATH

from eef.envs.scienceworld.java import find_java
from eef.errors import EefError

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Heap of a JVM: its own part plus one part per loaded simulator, each with a margin over what it
# was measured to use (docs/benchmarks.md).
BASE_HEAP_MB = 64
HEAP_PER_ENV_MB = 12
# The slowest call (a gold sequence of test-conductivity) takes seconds; a JVM silent this long is stuck.
CALL_TIMEOUT_S = 120.0
# A constant identity hash makes the simulator's hash-set iteration order, and with it the
# simulation, independent of the JVM's history (see the module docstring); a JVM without the
# experimental flag ignores it rather than refusing to start.
JVM_OPTIONS = ("-XX:+IgnoreUnrecognizedVMOptions", "-XX:+UnlockExperimentalVMOptions", "-XX:hashCode=2")


def _quiet_py4j() -> None:
    """Keep py4j's failure tracebacks off the terminal: eef reports JVM faults itself."""
    # py4j logs some failures through the ``logging`` module's functions, which configure the
    # root logger as a side effect; its own logger takes them instead.
    java_gateway.logging = logging.getLogger("py4j.java_gateway")
    # Its records are not even made: formatting their tracebacks (under a handler such as
    # pytest's) broke later ``ast.parse`` calls on Python 3.11.
    logging.getLogger("py4j").setLevel(logging.CRITICAL + 1)


_quiet_py4j()


class JvmDied(EefError):
    """The JVM behind a simulator is gone (killed, crashed, out of memory) or stopped answering."""


class Jvm:
    """One JVM running the ScienceWorld jar behind a py4j gateway.

    Args:
        java: path of the java binary.
        heap_mb: the JVM's maximum heap (``-Xmx``).
        timeout_s: how long the JVM may take to start or to answer one call (read at each call).

    Raises:
        EefError: the JVM could not start.
        JvmDied: it did not start within ``timeout_s``.
    """

    def __init__(self, java: str, heap_mb: int, timeout_s: float = CALL_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.stuck = False  # killed for not answering in time
        self.process = _launch(java, heap_mb)
        port = _read_port(self.process, timeout_s, java)
        # The socket timeout only backs up the watchdog, for py4j's own calls (freeing Java objects).
        self.gateway = JavaGateway(
            gateway_parameters=GatewayParameters(port=port, auto_field=True, read_timeout=2 * timeout_s),
            java_process=self.process,
        )
        self.simulators = 0
        logger.info("ScienceWorld JVM %d started (heap %d MB)", self.pid, heap_mb)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> float | None:
        """The JVM's resident memory in MB (Linux only; None elsewhere or when it is gone)."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return None
        return kb / 1024

    def new_simulator(self) -> Any:
        """A fresh simulator object (``PythonInterface``) in this JVM."""
        return self.gateway.jvm.scienceworld.runtime.pythonapi.PythonInterface()

    def close(self) -> None:
        """Stop the JVM (if it still runs) and the gateway."""
        if self.alive:
            with contextlib.suppress(Py4JError):  # gone meanwhile
                self.gateway.shutdown()
        self.kill()

    def kill(self) -> None:
        """Kill the JVM at once (it may be dead, stuck or stopped) and drop the gateway's sockets."""
        if self.alive:
            self.process.kill()
        self.process.wait()
        self.gateway.close()


def _launch(java: str, heap_mb: int) -> subprocess.Popen:
    """Start the jar's py4j gateway server (py4j's ``launch_gateway``, without its unbounded wait)."""
    classpath = os.pathsep.join((find_jar_path(), JAR_PATH))
    # --die-on-broken-pipe: the JVM ends when this Python process does, even if it is killed.
    command = [
        java,
        "-classpath",
        classpath,
        f"-Xmx{heap_mb}m",
        *JVM_OPTIONS,
        "py4j.GatewayServer",
        "--die-on-broken-pipe",
        "0",
    ]
    try:
        return subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=BASEPATH
        )
    except OSError as e:
        raise EefError(f"could not start ScienceWorld's JVM ({java} -jar {JAR_PATH}): {e}") from e


def _read_port(process: subprocess.Popen, timeout_s: float, java: str) -> int:
    """The port the gateway server prints first; then its output is drained in the background."""
    stdout = process.stdout
    assert stdout is not None  # _launch pipes it
    ready, _, _ = select.select([stdout], [], [], timeout_s)
    line = stdout.readline() if ready else b""
    if not line.strip().isdigit():
        process.kill()
        code = process.wait()
        if not ready:
            raise JvmDied(f"ScienceWorld's JVM {process.pid} did not start within {timeout_s:g} s")
        raise EefError(f"could not start ScienceWorld's JVM ({java} -jar {JAR_PATH}): it exited with code {code}")
    # The simulator prints to stdout; an undrained pipe would block it once full.
    threading.Thread(target=_drain, args=(stdout,), daemon=True).start()
    return int(line)


def _drain(stream: IO[bytes]) -> None:
    while stream.read(65536):
        pass


class _Watchdog:
    """One thread that kills the JVM of any call running past its JVM's ``timeout_s``: py4j
    would wait for a stopped or stuck JVM forever."""

    def __init__(self) -> None:
        self._pid = -1  # the process whose thread runs; a forked child starts its own
        self._calls: dict[int, tuple[float, Jvm]] = {}
        self._tokens = itertools.count()

    def watch(self, jvm: Jvm) -> int:
        """Start watching one call into ``jvm``; returns the token for :meth:`forget`."""
        deadline = time.monotonic() + jvm.timeout_s
        if self._pid != os.getpid():
            with _START_LOCK:
                if self._pid != os.getpid():
                    self._start()
        with self._wake:
            token = next(self._tokens)
            self._calls[token] = (deadline, jvm)
            if deadline < self._waiting_until:  # only a sooner deadline needs the thread awake
                self._wake.notify()
        return token

    def forget(self, token: int) -> None:
        with self._wake:
            del self._calls[token]

    def _start(self) -> None:
        self._calls = {}
        self._wake = threading.Condition()
        self._waiting_until = float("inf")
        threading.Thread(target=self._run, name="eef-jvm-watchdog", daemon=True).start()
        self._pid = os.getpid()

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for deadline, jvm in self._calls.values():
                    if deadline <= now and jvm.alive:
                        jvm.stuck = True
                        jvm.process.kill()  # the blocked call then fails and reports it
                pending = [deadline for deadline, _ in self._calls.values() if deadline > now]
                self._waiting_until = min(pending, default=float("inf"))
                self._wake.wait(None if not pending else self._waiting_until - now)


_WATCHDOG = _Watchdog()
_START_LOCK = threading.Lock()


class Simulator:
    """One ScienceWorld simulator in a JVM; every call raises :class:`JvmDied` if the JVM is gone."""

    def __init__(self, jvm: Jvm):
        self.jvm = jvm
        self._server = self.call(jvm.new_simulator)

    def call(self, method: Callable[..., T], *args: Any) -> T:
        """``method(*args)``, a call into the JVM; a JVM that died, ran out of heap, lost its
        connection or did not answer within its ``timeout_s`` (then killed) is reported as
        :class:`JvmDied`."""
        watch = _WATCHDOG.watch(self.jvm)
        try:
            return method(*args)
        except Py4JJavaError as e:
            if _out_of_memory(e):
                raise JvmDied(f"ScienceWorld's JVM {self.jvm.pid} ran out of heap; raise heap_mb") from e
            raise
        except Py4JError as e:
            # The JVM answered with an error (a Java trace): a bug in the call, not a fault of the JVM.
            if "Trace:" in str(e) and self.jvm.alive:
                raise
            raise JvmDied(f"ScienceWorld's JVM {self.jvm.pid} {self._fault()}") from e
        finally:
            _WATCHDOG.forget(watch)

    def _fault(self) -> str:
        if self.jvm.stuck:
            return f"did not answer within {self.jvm.timeout_s:g} s"
        try:  # a killed JVM closes its socket a moment before it can be reaped
            return f"died (exit code {self.jvm.process.wait(timeout=0.5)})"
        except subprocess.TimeoutExpired:
            return "lost its connection"

    def invoke(self, method: str, *args: Any) -> Any:
        """The simulator's ``method(*args)``; Java lists come back as Python lists (reading a
        Java list calls into the JVM too, so it happens inside :meth:`call`)."""

        def run() -> Any:
            result = getattr(self._server, method)(*args)
            return list(result) if isinstance(result, JavaList) else result

        return self.call(run)

    def load(self, task: str, variation: int, simplifications: str, gold: bool = False) -> None:
        """Select a task variation (``gold``: also compute its gold action sequence, slower)."""
        error = self.invoke("load", task, variation, simplifications, gold)
        if error:
            raise EefError(f"ScienceWorld cannot load {task} variation {variation}: {error}")

    def reset(self) -> None:
        self.invoke("reset")

    def step(self, action: str) -> str:
        """The simulator's own step: no look, inventory or valid-action enumeration."""
        return self.invoke("step", action)

    def score(self) -> int:
        """The score, 0-100 (negative once the task has failed)."""
        return round(100 * float(self.invoke("getScore")))

    def completed(self) -> bool:
        return bool(self.invoke("getCompleted"))

    def task_description(self) -> str:
        return self.invoke("getTaskDescription")

    def valid_actions(self) -> list[str]:
        return self.invoke("getValidActionObjectCombinations")

    def gold_actions(self) -> list[str]:
        """The gold action sequence of the last ``load(..., gold=True)``."""
        return self.invoke("getGoldActionSequence")


def _out_of_memory(error: Py4JJavaError) -> bool:
    try:
        return "OutOfMemoryError" in str(error.java_exception)
    except Py4JError:  # describing the exception needs the JVM, which may be gone by now
        return False


class JvmPool:
    """JVMs shared by ScienceWorld environments.

    Args:
        java: the java command or binary (checked now, with install advice if unusable).
        heap_mb: each JVM's maximum heap.
        envs_per_jvm: simulators one JVM hosts before the pool starts another.
        call_timeout_s: how long a JVM may take to start or to answer one call before it is
            killed as stuck.

    Raises:
        JavaNotFoundError: no usable Java.
        EefError: ``heap_mb`` is too small for ``envs_per_jvm`` simulators.
    """

    def __init__(
        self, java: str = "java", heap_mb: int = 256, envs_per_jvm: int = 16, call_timeout_s: float = CALL_TIMEOUT_S
    ):
        if envs_per_jvm < 1:
            raise EefError(f"envs_per_jvm must be at least 1, not {envs_per_jvm}")
        if call_timeout_s <= 0:
            raise EefError(f"call_timeout_s must be positive, not {call_timeout_s}")
        needed = BASE_HEAP_MB + HEAP_PER_ENV_MB * envs_per_jvm
        if heap_mb < needed:
            raise EefError(
                f"heap_mb={heap_mb} is too small for envs_per_jvm={envs_per_jvm}: each simulator "
                f"holds about {HEAP_PER_ENV_MB} MB, so use heap_mb >= {needed} or fewer envs_per_jvm"
            )
        self.java = find_java(java)
        self.heap_mb = heap_mb
        self.envs_per_jvm = envs_per_jvm
        self.call_timeout_s = call_timeout_s
        self.jvms: list[Jvm] = []
        self.restarts = 0

    def simulator(self) -> Simulator:
        """A new simulator in a JVM with room for it (starting a JVM when none has)."""
        jvm = next((j for j in self.jvms if j.alive and j.simulators < self.envs_per_jvm), None)
        if jvm is None:
            jvm = Jvm(self.java, self.heap_mb, self.call_timeout_s)
            self.jvms.append(jvm)
        try:
            simulator = Simulator(jvm)
        except JvmDied as e:  # a JVM that cannot host one more simulator is not picked again
            self.discard(jvm, str(e))
            raise
        jvm.simulators += 1
        return simulator

    def release(self, simulator: Simulator) -> None:
        """Give a simulator's slot back; a JVM left without simulators is stopped."""
        jvm = simulator.jvm
        jvm.simulators -= 1
        if jvm.simulators == 0 and jvm in self.jvms:
            self.jvms.remove(jvm)
            jvm.close()

    def discard(self, dead: Jvm, reason: str = "") -> None:
        """Kill and drop a JVM that died or got stuck (counted once in :attr:`restarts`, however
        many simulators it hosted); the next :meth:`simulator` starts another."""
        if dead in self.jvms:
            self.jvms.remove(dead)
            dead.kill()
            self.restarts += 1
            logger.warning(
                "%s; starting another (restart %d)", reason or f"ScienceWorld's JVM {dead.pid} failed", self.restarts
            )

    def rss_mb(self) -> list[float]:
        """Resident memory of each live JVM, in MB."""
        return [rss for jvm in self.jvms if (rss := jvm.rss_mb()) is not None]

    def close(self) -> None:
        """Stop every JVM."""
        for jvm in self.jvms:
            jvm.close()
        self.jvms.clear()
