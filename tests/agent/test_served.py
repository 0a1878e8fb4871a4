"""The served backend starts a server for its checkpoint, talks to it and stops it."""

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from eef.agent.backends import build_policy
from eef.agent.policy import GenerationRequest, SamplingParams
from eef.agent.served import ServedPolicy, server_argv
from eef.errors import EefError

EEF_SERVE = (
    f"{shlex.quote(sys.executable)} -m eef serve {{checkpoint}} --served-model-name {{checkpoint}} --port {{port}}"
)


def _python(code):
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def test_a_served_checkpoint_answers_and_its_server_stops_on_close(tiny_model_dir):
    policy = build_policy("served", str(tiny_model_dir), server_command=EEF_SERVE, server_start_timeout_s=120)
    with policy:
        completions = policy.generate(
            [GenerationRequest(({"role": "user", "content": "hello"},), seed=1)], SamplingParams(max_new_tokens=4)
        )
        assert len(completions) == 1 and completions[0].completion_tokens >= 1
        process = policy.process
    assert process.poll() is not None  # stopped with the policy


def test_a_server_that_exits_at_once_is_named_with_its_output():
    with pytest.raises(EefError, match=r"exited with code 3 before serving ckpt .*: boom"):
        ServedPolicy("ckpt", _python("import sys; print('boom'); sys.exit(3)"), start_timeout_s=30)


def test_a_server_that_never_lists_its_model_is_stopped_after_the_timeout():
    with pytest.raises(EefError, match=r"did not list ckpt within 1 s \(model.server_start_timeout_s"):
        ServedPolicy("ckpt", _python("import time; time.sleep(600)"), start_timeout_s=1)


def test_a_server_that_serves_another_name_is_named_at_once(tiny_model_dir):
    unnamed = f"{shlex.quote(sys.executable)} -m eef serve {{checkpoint}} --port {{port}}"  # the directory's name
    began = time.monotonic()
    with pytest.raises(EefError, match=rf"serves {tiny_model_dir.name}, not {tiny_model_dir}; .*--served-model-name"):
        ServedPolicy(str(tiny_model_dir), unnamed, start_timeout_s=120)
    assert time.monotonic() - began < 60  # not the whole start timeout


def test_a_bad_command_template_is_named_by_its_key():
    with pytest.raises(EefError, match=r"model.server_command: .* placeholders \{checkpoint\}, \{port\}, \{gpus\}"):
        server_argv("vllm serve {model}", "ckpt", 1, 1)
    with pytest.raises(EefError, match="model.server_command: cannot start 'no-such-server-eef'"):
        ServedPolicy("ckpt", "no-such-server-eef {checkpoint}", start_timeout_s=1)


def test_sigterm_to_eef_stops_the_server_it_started(tiny_model_dir, tmp_path):
    # a launcher or a scheduler ends eef with SIGTERM: the server must not outlive it
    pid_file = tmp_path / "server.pid"
    server = _python(f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)")
    command = [sys.executable, "-m", "eef.cli", "explore", "shop", "--model", str(tiny_model_dir)]
    command += ["--out", str(tmp_path / "out.jsonl"), "--limit", "1", "--backend", "served", "--server-command", server]
    eef = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    eef.send_signal(signal.SIGTERM)
    assert eef.wait(timeout=60) == 128 + signal.SIGTERM
    server_pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # gone, not even a zombie: its parent reaped it
        os.kill(server_pid, 0)
