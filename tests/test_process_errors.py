"""What a ProcessPool call raises when its process dies or its data cannot
cross (issue 15, point 2): the types code written for ProcessPoolExecutor
expects, and the pool stays usable with the same process where it lives."""

import concurrent.futures as cf
import os
import pickle
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

import offload
from offload import ProcessPool


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


class _LoadsBadly:
    """Pickles fine; raises when it is loaded."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise ValueError("cannot be loaded here")


def _refuse_in_child():
    # Loadable in the parent, refused in a worker process.
    from offload._process import child

    if child.IN_CHILD:
        raise ValueError("cannot be loaded in a worker")
    return "loaded"


class _LoadsOnlyInParent:
    def __reduce__(self):
        return (_refuse_in_child, ())


def _result_loads_badly():
    return _LoadsBadly()


def _identity(x):
    return x


@pytest.fixture(scope="module")
def pool():
    p = ProcessPool(1)
    yield p
    p.shutdown()


def test_a_crash_is_caught_as_broken_process_pool_and_the_pool_lives_on(pool):
    with pytest.raises(BrokenProcessPool):
        pool.call(_die)
    try:
        pool.submit(_die).result(timeout=30)
    except cf.BrokenExecutor as exc:  # what code written for the stdlib catches
        assert isinstance(exc, offload.WorkerCrashed)
        assert exc.exitcode == -signal.SIGKILL
    else:
        pytest.fail("no BrokenExecutor")
    assert pool.call(_identity, 5) == 5


def test_a_call_the_child_cannot_load_is_an_unpickling_error(pool):
    pid = pool.call(os.getpid)
    with pytest.raises(pickle.UnpicklingError, match="cannot load the call"):
        pool.call(_identity, _LoadsOnlyInParent())
    assert pool.call(os.getpid) == pid  # same process: nothing broke


def test_a_result_the_parent_cannot_load_is_an_unpickling_error(pool):
    pid = pool.call(os.getpid)
    with pytest.raises(pickle.UnpicklingError, match="cannot load what the worker process sent back"):
        pool.call(_result_loads_badly)
    assert pool.call(os.getpid) == pid


def test_pickle_errors_are_not_broken_executor(pool):
    for fn, args in ((_identity, (_LoadsOnlyInParent(),)), (_result_loads_badly, ())):
        with pytest.raises(pickle.PickleError) as info:
            pool.call(fn, *args)
        assert not isinstance(info.value, cf.BrokenExecutor)
