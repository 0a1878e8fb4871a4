"""JVMs running ScienceWorld's simulator, shared by many environments, restarted when they die.

The ``scienceworld`` package starts one JVM per ``ScienceWorldEnv`` with an uncapped heap (it grew
to 3.4 GB here). eef starts the bundled jar itself through py4j with ``-Xmx``, and creates one
simulator object (``PythonInterface``) per environment inside a shared JVM: a loaded simulator
holds about 11 MB of heap, so a JVM takes at most ``envs_per_jvm`` of them and the pool starts
another JVM when all are full.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from py4j.java_gateway import JavaGateway, GatewayParameters, launch_gateway
from py4j.protocol import Py4JError, Py4JJavaError
from scienceworld.constants import BASEPATH, JAR_PATH

from eef.envs.scienceworld.java import find_java
from eef.errors import EefError

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Measured: a JVM with no simulator uses about 13 MB of heap, each loaded simulator about 11 MB.
BASE_HEAP_MB = 64
HEAP_PER_ENV_MB = 12


class JvmDied(EefError):
    """The JVM behind a simulator stopped (killed, crashed, out of memory)."""


class Jvm:
    """One JVM running the ScienceWorld jar behind a py4j gateway.

    Args:
        java: path of the java binary.
        heap_mb: the JVM's maximum heap (``-Xmx``).
    """

    def __init__(self, java: str, heap_mb: int):
        try:
            # die_on_exit: the JVM ends when this Python process does, even if it is killed.
            port, self.process = launch_gateway(
                classpath=JAR_PATH, javaopts=[f"-Xmx{heap_mb}m"], die_on_exit=True, cwd=BASEPATH,
                java_path=java, return_proc=True)
        except (OSError, Py4JError, ValueError) as e:
            raise EefError(f"could not start ScienceWorld's JVM ({java} -jar {JAR_PATH}): {e}") from e
        self.gateway = JavaGateway(gateway_parameters=GatewayParameters(port=port, auto_field=True),
                                   java_process=self.process)
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
        try:
            self.gateway.shutdown()
        except Py4JError:  # already gone
            pass
        if self.alive:
            self.process.kill()
        self.process.wait()


class Simulator:
    """One ScienceWorld simulator in a JVM; every call raises :class:`JvmDied` if the JVM is gone."""

    def __init__(self, jvm: Jvm):
        self.jvm = jvm
        self._server = self.call(jvm.new_simulator)

    def call(self, method: Callable[..., T], *args: Any) -> T:
        """``method(*args)``, a call into the JVM, with a dead JVM reported as :class:`JvmDied`."""
        try:
            return method(*args)
        except Py4JJavaError as e:
            if "OutOfMemoryError" in str(e.java_exception):
                raise JvmDied(f"ScienceWorld's JVM {self.jvm.pid} ran out of heap; raise heap_mb") from e
            raise
        except Py4JError as e:
            if self.jvm.alive:
                raise
            raise JvmDied(f"ScienceWorld's JVM {self.jvm.pid} died") from e

    def load(self, task: str, variation: int, simplifications: str, gold: bool = False) -> None:
        """Select a task variation (``gold``: also compute its gold action sequence, slower)."""
        error = self.call(self._server.load, task, variation, simplifications, gold)
        if error:
            raise EefError(f"ScienceWorld cannot load {task} variation {variation}: {error}")

    def reset(self) -> None:
        self.call(self._server.reset)

    def step(self, action: str) -> str:
        """The simulator's own step: no look, inventory or valid-action enumeration."""
        return self.call(self._server.step, action)

    def score(self) -> int:
        """The score, 0-100 (negative once the task has failed)."""
        return int(round(100 * self.call(self._server.getScore)))

    def completed(self) -> bool:
        return bool(self.call(self._server.getCompleted))

    def task_description(self) -> str:
        return self.call(self._server.getTaskDescription)

    def valid_actions(self) -> list[str]:
        return list(self.call(self._server.getValidActionObjectCombinations))

    def gold_actions(self) -> list[str]:
        """The gold action sequence of the last ``load(..., gold=True)``."""
        return list(self.call(self._server.getGoldActionSequence))


class JvmPool:
    """JVMs shared by ScienceWorld environments.

    Args:
        java: the java command or binary (checked now, with install advice if unusable).
        heap_mb: each JVM's maximum heap.
        envs_per_jvm: simulators one JVM hosts before the pool starts another.

    Raises:
        JavaNotFoundError: no usable Java.
        EefError: ``heap_mb`` is too small for ``envs_per_jvm`` simulators.
    """

    def __init__(self, java: str = "java", heap_mb: int = 256, envs_per_jvm: int = 16):
        if envs_per_jvm < 1:
            raise EefError(f"envs_per_jvm must be at least 1, not {envs_per_jvm}")
        needed = BASE_HEAP_MB + HEAP_PER_ENV_MB * envs_per_jvm
        if heap_mb < needed:
            raise EefError(f"heap_mb={heap_mb} is too small for envs_per_jvm={envs_per_jvm}: each simulator "
                           f"holds about {HEAP_PER_ENV_MB} MB, so use heap_mb >= {needed} or fewer envs_per_jvm")
        self.java = find_java(java)
        self.heap_mb = heap_mb
        self.envs_per_jvm = envs_per_jvm
        self.jvms: list[Jvm] = []
        self.restarts = 0

    def simulator(self) -> Simulator:
        """A new simulator in a JVM with room for it (starting a JVM when none has)."""
        jvm = next((j for j in self.jvms if j.alive and j.simulators < self.envs_per_jvm), None)
        if jvm is None:
            jvm = Jvm(self.java, self.heap_mb)
            self.jvms.append(jvm)
        try:
            simulator = Simulator(jvm)
        except JvmDied:  # a JVM that cannot host one more simulator is not picked again
            self.discard(jvm)
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

    def discard(self, dead: Jvm) -> None:
        """Drop a JVM that died (counted once in :attr:`restarts`, however many simulators it
        hosted); the next :meth:`simulator` starts another."""
        if dead in self.jvms:
            self.jvms.remove(dead)
            dead.close()
            self.restarts += 1
            logger.warning("ScienceWorld JVM %d died; starting another (restart %d)", dead.pid, self.restarts)

    def rss_mb(self) -> list[float]:
        """Resident memory of each live JVM, in MB."""
        return [rss for jvm in self.jvms if (rss := jvm.rss_mb()) is not None]

    def close(self) -> None:
        """Stop every JVM."""
        for jvm in self.jvms:
            jvm.close()
        self.jvms.clear()
