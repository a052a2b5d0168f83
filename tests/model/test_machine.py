"""One answer to "is there a GPU" and "how many cores" (finetune/model/machine.py), read by the job manager's
slots (jobs/process.py), the dtype rule (model/dtypes.py) and the multi-process launch (train/distributed.py).
They used to ask with their own lists of device nodes: on WSL (/dev/dxg, no /dev/nvidiactl) the manager
saw no GPU while the dtype rule picked half precision; on ROCm (/dev/kfd) the reverse. Device nodes and
torch.cuda are faked here, so these run on any machine."""

import sys
import types

import pytest

from finetune.jobs import process
from finetune.model import dtypes, machine
from finetune.train import distributed, threads


def fake_torch(count: int, bf16: bool = True):
    cuda = types.SimpleNamespace(device_count=lambda: count, is_available=lambda: count > 0,
                                 is_bf16_supported=lambda: bf16)
    return types.SimpleNamespace(cuda=cuda)


@pytest.fixture
def machine_with(monkeypatch, tmp_path):
    """machine_with(node, gpus): Linux with only that device node (None: none) and a torch that counts `gpus`."""

    def make(node: str | None, gpus: int, bf16: bool = True):
        nodes = ()
        if node is not None:
            (tmp_path / node).touch()
            nodes = (str(tmp_path / node),)
        monkeypatch.setattr(machine, "DEVICE_NODES", nodes)
        monkeypatch.setattr(machine.sys, "platform", "linux")
        monkeypatch.setitem(sys.modules, "torch", fake_torch(gpus, bf16))
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        dtypes.this_device.cache_clear()

    yield make
    dtypes.this_device.cache_clear()


def answers() -> tuple[int, int, bool, str]:
    return len(process.detect_gpus()), len(distributed.visible_gpus()), dtypes.this_device().cuda, \
        dtypes.resolve_dtype("auto")


@pytest.mark.parametrize("node", ["nvidiactl", "dxg", "kfd"])   # NVIDIA, WSL, ROCm
def test_every_reader_sees_the_same_gpus_whatever_the_driver(machine_with, node):
    machine_with(node, gpus=2)
    assert answers() == (2, 2, True, "bfloat16")


def test_an_older_gpu_gets_float16_from_the_same_answer(machine_with):
    machine_with("nvidia0", gpus=1, bf16=False)
    assert answers() == (1, 1, True, "float16")


def test_without_a_driver_nobody_sees_a_gpu_and_torch_is_not_asked(machine_with, monkeypatch):
    machine_with(None, gpus=4)
    monkeypatch.setitem(sys.modules, "torch", None)   # importing it would raise: it must not be imported
    assert answers() == (0, 0, False, "float32")


def test_a_driver_torch_cannot_use_is_no_gpu_for_anyone(machine_with):
    machine_with("nvidiactl", gpus=0)
    assert answers() == (0, 0, False, "float32")


def test_the_manager_hands_out_the_visible_devices_it_counted(machine_with, monkeypatch):
    machine_with("nvidiactl", gpus=2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert process.detect_gpus() == ["3", "5"] and distributed.visible_gpus() == [0, 1]


def test_one_cpu_count_for_the_launch_and_the_page_s_share(monkeypatch):
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert machine.cpu_count() == distributed.cpu_count() == threads.cores() == 3
