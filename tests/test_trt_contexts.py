"""Issue 24, item 3: one execution context per CUDA stream, each on its own optimization profile.

Over a `tensorrt` generated from the TensorRT 10.13 stubs (tests/trt_fake.py): the contexts a
runner makes, their profiles and activation memory, and which calls run at once. Real engines:
tests/gpu/test_engines.py::test_two_streams_run_on_two_profiles_at_once.
"""

from __future__ import annotations

import sys
import threading
import time
import types

import numpy as np
import pytest
from trt_fake import fake_tensorrt

from focalnet_edge.folder.contract import InputContract
from focalnet_edge.runtime import tensorrt as trt_mod
from focalnet_edge.runtime import trt_contexts

PROFILE = [[1, 3, 224, 224], [4, 3, 224, 224], [8, 3, 224, 224]]


@pytest.fixture
def engine(monkeypatch):
    """`engine(profiles)`: a fake engine with that many optimization profiles; device allocations recorded, not made."""
    allocations = []

    class Block:
        freed = False

        def free(self):
            self.freed = True

    def allocate(nbytes):
        allocations.append(nbytes)
        return 0x100000, Block()

    monkeypatch.setattr(trt_contexts, "device_allocation", allocate)

    def make(profiles=2, sizes=(1000, 3000), version="10.3.0"):
        trt = fake_tensorrt(version, behaviour={
            "ICudaEngine.num_optimization_profiles": profiles,
            "ICudaEngine.get_device_memory_size_for_profile_v2": lambda self, i: sizes[i],
            "IExecutionContext.set_optimization_profile_async": True,
        })
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt.ICudaEngine()

    make.allocations = allocations
    return make


def _made(engine):
    """The create_execution_context calls the engine saw (their arguments)."""
    return [args for name, args, _ in engine._calls if name == "create_execution_context"]


def test_two_streams_get_two_contexts_on_profiles_0_and_1_and_run_at_once(engine):
    eng = engine(profiles=2, sizes=(1000, 3000))
    pool = trt_contexts.ContextPool(eng)
    both_inside = threading.Barrier(2, timeout=5)  # broken unless both calls hold a context at the same time
    got = {}

    def call(stream):
        with pool.context(stream, lambda s: None) as (index, ctx):
            both_inside.wait()
            got[stream] = index, ctx

    threads = [threading.Thread(target=call, args=(s,)) for s in (0xA, 0xB)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for i, _ in got.values()) == [0, 1] and got[0xA][1] is not got[0xB][1]
    trt = sys.modules["tensorrt"]
    assert _made(eng) == [(trt.ExecutionContextAllocationStrategy.USER_MANAGED,)] * 2
    assert engine.allocations == [2 * 3072]  # once, for both: two slices of the largest profile's size, 256-aligned
    by_index = {i: (s, ctx) for s, (i, ctx) in got.items()}
    memory = {i: [a for n, a, _ in ctx._calls if n == "set_device_memory"] for i, (_, ctx) in by_index.items()}
    assert memory == {0: [(0x100000, 3072)], 1: [(0x100000 + 3072, 3072)]}  # each its own slice
    stream1, ctx1 = by_index[1]
    assert [a for n, a, _ in ctx1._calls if n == "set_optimization_profile_async"] == [(1, stream1)]  # on the caller's stream
    assert not [a for n, a, _ in by_index[0][1]._calls if n == "set_optimization_profile_async"]  # profile 0 is the default


def test_a_third_stream_waits_for_a_free_context_and_then_for_its_last_streams_work(engine):
    pool = trt_contexts.ContextPool(engine(profiles=2))
    waited, order = [], []
    held = threading.Barrier(3, timeout=5)
    release = {s: threading.Event() for s in (1, 2)}

    def hold(stream):
        with pool.context(stream, waited.append) as (index, _):
            order.append(("in", stream, index))
            held.wait()
            release[stream].wait(5)
            order.append(("out", stream))  # the last thing before the context is given back

    def third():
        with pool.context(3, waited.append) as (index, _):
            order.append(("in", 3, index))

    holders = [threading.Thread(target=hold, args=(s,)) for s in (1, 2)]
    for t in holders:
        t.start()
    held.wait()  # both contexts are in use
    late = threading.Thread(target=third)
    late.start()
    time.sleep(0.2)
    assert [o for o in order if o[1] == 3] == []  # still waiting: more streams than profiles
    release[1].set()
    late.join(5)
    release[2].set()
    for t in holders:
        t.join()
    index_of_1 = next(o[2] for o in order if o[:2] == ("in", 1))
    assert ("in", 3, index_of_1) in order and order.index(("out", 1)) < order.index(("in", 3, index_of_1))
    assert waited == [1]  # stream 1's work in that context was waited for before stream 3 used it


def test_one_stream_keeps_its_context_and_stays_asynchronous(engine):
    eng = engine(profiles=2)
    pool = trt_contexts.ContextPool(eng)
    waited, seen = [], []
    for stream in (5, 6, 5, 6, 5):
        with pool.context(stream, waited.append) as (index, ctx):
            seen.append((stream, index, id(ctx)))
    assert {s: {i for st, i, _ in seen if st == s} for s in (5, 6)} == {5: {0}, 6: {1}}
    assert waited == [] and len(_made(eng)) == 2  # never waited, each context made once


def test_one_profile_behaves_as_before(engine):
    eng = engine(profiles=1)
    pool = trt_contexts.ContextPool(eng)
    waited = []
    for stream in (1, 1, 2):
        with pool.context(stream, waited.append) as (index, ctx):
            assert index == 0
    assert _made(eng) == [()]  # TensorRT's own (static) allocation, as before: no user-managed memory
    assert engine.allocations == [] and not [n for n, _, _ in ctx._calls if n in ("set_device_memory", "set_optimization_profile_async")]
    assert waited == [1]  # another stream: the last one's work is waited for first


def test_tensorrt_before_10_1_sizes_the_memory_with_the_v1_call(engine):
    eng = engine(profiles=2, version="10.0.1")
    sys.modules["tensorrt"]._behaviour["ICudaEngine.get_device_memory_size_for_profile"] = lambda self, i: 512
    assert trt_contexts.ContextPool(eng).memory_bytes() == 512


def _runner(eng):
    runner = object.__new__(trt_mod.TensorRTRunner)
    runner.profile = PROFILE
    runner.contract = trt_mod.contract_for_profile(InputContract(height=224, width=224, batch=(1, 4, 8)), PROFILE)
    runner.output_names, runner.path, runner.name = ["logits"], trt_mod.Path("model.engine"), "tensorrt:model.engine"
    runner._engine, runner._context = eng, None
    return runner


def test_the_runners_torch_calls_on_two_streams_run_at_once_on_two_profiles(engine, monkeypatch):
    torch = pytest.importorskip("torch")
    eng = engine(profiles=2)
    trt = sys.modules["tensorrt"]
    both_enqueued = threading.Barrier(2, timeout=5)
    trt._behaviour.update({
        "ICudaEngine.get_tensor_dtype": lambda self, name: trt.DataType.FLOAT,
        "IExecutionContext.get_tensor_shape": lambda self, name: [2, 10],
        "IExecutionContext.set_input_shape": True, "IExecutionContext.set_tensor_address": True,
        "IExecutionContext.execute_async_v3": lambda self, stream: both_enqueued.wait() >= 0,
    })
    streams = threading.local()
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=streams.handle))
    runner = _runner(eng)
    errors = []

    def call(handle):
        streams.handle = handle
        try:
            runner._infer_torch(torch.zeros(2, 3, 224, 224))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=call, args=(h,)) for h in (0xA, 0xB)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pool = runner._pool()
    executes = {i: [a for n, a, _ in ctx._calls if n == "execute_async_v3"] for i, ctx in enumerate(pool.contexts)}
    assert sorted(executes.values()) == [[(0xA,)], [(0xB,)]]  # one enqueue per context, each on its caller's stream
    assert runner._context is pool.contexts[0]


def test_numpy_calls_run_in_the_pools_context_not_a_second_one_on_profile_0(engine, monkeypatch):
    """Polygraphy's TrtRunner used to make its own context on profile 0 beside the thin path's."""
    torch = pytest.importorskip("torch")
    eng = engine(profiles=1)
    trt = sys.modules["tensorrt"]
    trt._behaviour.update({
        "ICudaEngine.get_tensor_dtype": lambda self, name: trt.DataType.FLOAT,
        "IExecutionContext.get_tensor_shape": lambda self, name: [2, 10],
        "IExecutionContext.set_input_shape": True, "IExecutionContext.set_tensor_address": True,
        "IExecutionContext.execute_async_v3": True, "IExecutionContext.set_output_allocator": True,
    })
    made, runners = [], []

    class TrtRunner:  # Polygraphy's, as far as the runner uses it
        def __init__(self, engine_or_context):
            made.append(engine_or_context)
            runners.append(self)
            self.is_active = False

        def activate(self):
            self.is_active = True

        def deactivate(self):
            self.is_active = False

        def infer(self, feed):
            return {"logits": np.zeros((len(feed["pixel_values"]), 10), np.float32)}

    monkeypatch.setattr("polygraphy.backend.trt.TrtRunner", TrtRunner)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=7))
    runner = _runner(eng)
    assert runner.run(np.zeros((2, 3, 224, 224), np.float32))["logits"].shape == (2, 10)
    runner._infer_torch(torch.zeros(2, 3, 224, 224))
    assert len(_made(eng)) == 1 and made == [runner._context]  # one context, shared in turn
    unset = [a for n, a, _ in runner._context._calls if n == "set_output_allocator"]
    assert unset == [("logits", None)]  # Polygraphy's output allocator unset before the thin path binds addresses
    runner.close()
    assert not runners[0].is_active and runner._context is None


def test_the_cli_takes_streams_for_engine_and_build():
    import argparse

    from focalnet_edge.cli.args import EngineArgs

    p = argparse.ArgumentParser()
    EngineArgs.add(p)
    assert EngineArgs.options(p.parse_args(["--streams", "2"])).streams == 2
    assert EngineArgs.options(p.parse_args([])).streams == 1
