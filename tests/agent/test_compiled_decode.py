"""Compiled decoding (CUDA graphs on a GPU): the same completions as eager decoding, one graph, reused buffers.

The CPU cannot record CUDA graphs; what they need is checked here: a step that compiles into a single
graph (a break would split it) and buffers whose addresses stay the same from one decode to the next.
"""

import pytest
import torch
from torch._dynamo.utils import counters

from eef.agent.compiled_decode import CompiledDecoder
from eef.agent.hf_policy import HFPolicy
from eef.agent.policy import GenerationRequest, SamplingParams
from eef.config import ConfigError, load_config

# torch's own tracing calls it while compiling
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


def _requests(lengths, turn=0):
    return [
        GenerationRequest(
            [{"role": "user", "content": " ".join(f"red scarf {j}" for j in range(n))}]
            + [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "next page"}] * turn,
            seed=i,
            conversation=f"c{i}",
        )
        for i, n in enumerate(lengths)
    ]


@pytest.fixture
def compiled(tiny_model_dir):
    policy = HFPolicy.from_pretrained(tiny_model_dir, device="cpu", max_batch_size=16, decode="compiled")
    # aot_eager traces and partitions as inductor does, without generating C++ (seconds instead of half a minute)
    policy.compiled = CompiledDecoder(policy.model, policy.cache_keyword, policy.max_batch_size, backend="aot_eager")
    torch._dynamo.reset()
    counters.clear()
    return policy


def test_compiled_decoding_gives_the_completions_of_eager_decoding(tiny_model_dir, compiled):
    """Conversations of very different lengths (several prefill groups), a batch padded from 6 to
    8 rows, rows ending apart at stop strings, and a second turn read from the cached KV."""
    eager = HFPolicy.from_pretrained(tiny_model_dir, device="cpu", max_batch_size=16, decode="eager")
    assert compiled.compiled is not None and not compiled.grouped and eager.compiled is None
    lengths = [3, 300, 10, 900, 40, 250]
    for params in (
        SamplingParams(temperature=1.0, max_new_tokens=12),
        SamplingParams(temperature=1.0, max_new_tokens=16, stop=("e", "a")),
        SamplingParams(temperature=0.0, max_new_tokens=12),
    ):
        for turn in (0, 1):
            expected = eager.generate(_requests(lengths, turn), params)
            got = compiled.generate(_requests(lengths, turn), params)
            assert [c.text for c in got] == [c.text for c in expected]
            assert [c.finish_reason for c in got] == [c.finish_reason for c in expected]
            assert [c.extra["cached_tokens"] for c in got] == [c.extra["cached_tokens"] for c in expected]
    assert sum(c.extra["cached_tokens"] > 0 for c in got) == len(lengths)  # the second turns reused their KV
    assert compiled.compiled.failure is None and not counters["graph_break"], "a break splits the step"
    assert counters["stats"]["unique_graphs"] == 1  # every decode above: 8 rows of 8192 columns
    more_rows = [900] + [5 + 7 * i for i in range(11)]  # 12 rows, padded to 16; the same width
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    got = compiled.generate(_requests(more_rows), greedy)
    assert [c.text for c in got] == [c.text for c in eager.generate(_requests(more_rows), greedy)]
    assert (16, 8192) in compiled.compiled.workspaces and counters["stats"]["unique_graphs"] == 1


def test_decodes_of_one_shape_reuse_its_buffers(compiled):
    """A CUDA graph replays on the addresses it recorded: a decode of a shape seen before must write
    into the same cache and mask, not fresh ones."""
    params = SamplingParams(temperature=1.0, max_new_tokens=8)
    compiled.generate(_requests([5, 7, 9]), params)
    (shape, workspace), *_ = compiled.compiled.workspaces.items()
    assert shape == (8, 256)  # 3 rows padded to 8; a short prompt and 8 new tokens in 256 columns
    addresses = [workspace.attention.data_ptr()] + [layer.keys.data_ptr() for layer in workspace.cache.layers]
    compiled.generate(_requests([6, 8, 4, 3], turn=0), params)
    assert list(compiled.compiled.workspaces) == [(8, 256)]
    assert [workspace.attention.data_ptr()] + [layer.keys.data_ptr() for layer in workspace.cache.layers] == addresses
    compiled.close()
    assert not compiled.compiled.workspaces


def test_an_unknown_decode_mode_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="decode: expected one of auto, eager, compiled, got 'fast'"):
        HFPolicy.from_pretrained(tiny_model_dir, device="cpu", decode="fast")
    with pytest.raises(ConfigError, match="model.decode"):
        load_config(None, ["model.decode=fast"])


def test_auto_decodes_eagerly_on_the_cpu(tiny_model_dir):
    policy = HFPolicy.from_pretrained(tiny_model_dir, device="cpu")
    assert policy.compiled is None and policy.grouped


def test_a_step_that_fails_to_compile_runs_eagerly(tiny_model_dir, compiled, caplog):
    """A GPU machine without what inductor needs (a C compiler, triton) still decodes, with a warning."""
    params = SamplingParams(temperature=1.0, max_new_tokens=8)
    expected = [c.text for c in compiled.generate(_requests([5, 40]), params)]

    def no_compiler(graph, example_inputs):
        raise RuntimeError("no working C compiler")

    compiled.compiled = CompiledDecoder(compiled.model, compiled.cache_keyword, 16, backend=no_compiler)
    with caplog.at_level("WARNING"):
        got = compiled.generate(_requests([5, 40]), params)
    assert [c.text for c in got] == expected
    assert "decoding eagerly: torch.compile failed" in caplog.text
    assert "no working C compiler" in compiled.compiled.failure
    compiled.compiled.clear()  # later decodes are plain eager ones: no workspace, finished rows dropped
    assert [c.text for c in compiled.generate(_requests([5, 40]), params)] == expected
    assert not compiled.compiled.workspaces


def test_the_run_configuration_chooses_the_decoding(tiny_model_dir):
    from eef.config import ModelSection
    from eef.stages import open_policy

    with open_policy(ModelSection(device="cpu", decode="compiled"), tiny_model_dir) as policy:
        assert policy.compiled is not None
    with open_policy(ModelSection(device="cpu", decode="eager"), tiny_model_dir) as policy:
        assert policy.compiled is None


def test_on_cuda_short_memory_drops_older_workspaces_and_closing_frees_the_graphs(compiled, monkeypatch):
    """The CUDA bookkeeping, with the device's answers faked on the CPU: a new workspace evicts the
    older ones while the free memory is under twice its size; closing resets the recorded graphs."""
    from torch._inductor import cudagraph_trees

    params = SamplingParams(temperature=1.0, max_new_tokens=4)
    compiled.generate(_requests([5]), params)
    compiled.generate(_requests([5] * 9), params)  # 16 rows: a second workspace
    assert list(compiled.compiled.workspaces) == [(8, 256), (16, 256)]
    free = {"bytes": 1 << 40}
    resets = []
    monkeypatch.setattr(compiled.compiled, "device", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free["bytes"], 1 << 40))
    monkeypatch.setattr(cudagraph_trees, "reset_cudagraph_trees", lambda: resets.append(True))
    compiled.generate(_requests([300]), params)  # plenty free: kept beside the others
    assert list(compiled.compiled.workspaces) == [(8, 256), (16, 256), (8, 2048)]
    free["bytes"] = 0  # nothing free: every older workspace goes before a new one is made
    compiled.generate(_requests([600]), params)
    assert list(compiled.compiled.workspaces) == [(8, 4096)]
    compiled.close()
    assert not compiled.compiled.workspaces and resets == [True]
