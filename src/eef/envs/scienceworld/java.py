"""Finding a Java runtime that can run ScienceWorld's simulator, or saying how to install one."""

from __future__ import annotations

import re
import shutil
import subprocess

from eef.errors import EefError

# The bundled jar is compiled for Java 8 (class file version 52); the simulator is tested on 17.
MIN_JAVA = 8
INSTALL_HINT = (
    "install Java 17, e.g. `sudo apt install openjdk-17-jre-headless` (Debian/Ubuntu), "
    "`brew install openjdk@17` (macOS) or `conda install -c conda-forge openjdk=17`, "
    "or pass the java binary with -o java=/path/to/java"
)
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


class JavaNotFoundError(EefError):
    """No usable Java runtime: missing, broken or too old."""


def java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output (``1.8.0_392`` -> 8, ``17.0.15`` -> 17).

    >>> java_major('openjdk version "17.0.15" 2025-04-15')
    17
    >>> java_major('java version "1.8.0_392"')
    8
    """
    match = _VERSION.search(version_output)
    if match is None:
        return None
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    return minor if major == 1 else major


def find_java(java: str = "java") -> str:
    """The path of a Java runtime new enough for ScienceWorld.

    Args:
        java: a command name on PATH or a path to the ``java`` binary.

    Raises:
        JavaNotFoundError: it is missing, does not run, or is older than Java 8; the message says
            how to install Java 17.
    """
    path = shutil.which(java)
    if path is None:
        raise JavaNotFoundError(f"ScienceWorld needs Java, but {java!r} was not found; {INSTALL_HINT}")
    try:
        done = subprocess.run([path, "-version"], check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JavaNotFoundError(f"ScienceWorld needs Java, but {path} -version failed ({e}); {INSTALL_HINT}") from e
    major = java_major(done.stderr + done.stdout)
    if major is None:
        raise JavaNotFoundError(
            f"ScienceWorld needs Java, but {path} -version printed no version "
            f"({(done.stderr or done.stdout).strip()[:200]!r}); {INSTALL_HINT}"
        )
    if major < MIN_JAVA:
        raise JavaNotFoundError(
            f"ScienceWorld needs Java {MIN_JAVA} or newer, but {path} is Java {major}; {INSTALL_HINT}"
        )
    return path
