"""torchrun / DistributedDataParallel: N CPU processes (gloo) train the net one process trains.

What must agree for N processes to equal one process with the same global batch: the same initial weights
(seed; DDP also broadcasts rank 0's), the same data order (the one-process shuffle, then rank::world slicing),
BatchNorm statistics over the global batch (SyncBatchNormCPU: torch's SyncBatchNorm has no CPU kernels), the loss
of the global batch (segapp.train_loop.global_batch_loss: Dice is per class over the whole batch and void pixels are not
spread evenly, so the mean of per-rank losses would differ), and gradients averaged by DDP.

Precision: PyTorch's own CPU BatchNorm backward in channels_last (the one-process path) is only good to about
1e-4 relative per layer (``test_cpu_batchnorm_backward_is_the_float32_noise``); through 7 layers the one-process
float32 gradients are ~1% off the float64 values, and AdamW's first steps (update ~ lr x sign) turn that into weight
differences of a few 1e-3: one process on 1 thread vs 2 threads already differs by 3.2e-3. So the exact equality is
shown in float64 with the training engine's parts (``test_engine_two_ranks_equal_one_rank_in_float64``: 2.5e-13
after 8 steps; with the loss alone in float32 it is already 3e-4), and the float32 command line runs are compared at
their noise level.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from segapp import distributed
from segapp.classes import SegappError
from segapp.train_config import TrainConfig
from segapp.train_loop import build_loss, global_batch_loss
from segapp.train_resume import BLEND_FILES, RUN_FILES

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--widths", "8", "--epochs", "3", "--train-size", "64", "--val-size", "16", "--batch-size", "16",
        "--wild", "0", "--no-augment", "--workers", "0", "--amp", "off"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                                          "MASTER_ADDR", "MASTER_PORT")}
    return {**e, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pt", map_location="cpu", weights_only=True)["model"]


def log_rows(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "log.csv").open()))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# ---- fast: the pieces, in one process ---------------------------------------------------------------------------


def test_one_process_is_untouched():
    assert not distributed.launched() and distributed.world() == 1 and distributed.is_main()
    assert distributed.init(torch.device("cpu")) == torch.device("cpu")
    assert distributed.on_main(lambda a, b: a + b, 2, 3) == 5 and distributed.broadcast("x") == "x"
    distributed.barrier()
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(2))
    assert distributed.wrap(net, torch.device("cpu")) is net and type(net[0]) is torch.nn.BatchNorm2d


def test_shards_split_every_global_batch_of_the_one_process_order(monkeypatch):
    """Rank r's k-th batch of batch/world images + the other ranks' k-th batches = the one-process k-th batch."""
    data = TensorDataset(torch.arange(70))  # 70 = 4 whole batches of 16 + 6 left over (dropped, as in one process)
    one = [b[0].tolist() for b in DataLoader(data, 16, shuffle=True, drop_last=True,
                                             generator=torch.Generator().manual_seed(5))]
    for world in (2, 4):
        shards = []
        for r in range(world):
            monkeypatch.setattr(distributed, "world", lambda w=world: w)
            monkeypatch.setattr(distributed, "rank", lambda r=r: r)
            g = torch.Generator().manual_seed(5)
            loader = DataLoader(data, distributed.per_rank_batch(16), sampler=distributed.ShardSampler(70, g, 16),
                                drop_last=True, generator=g)
            shards.append([b[0].tolist() for b in loader])
        assert all(len(s) == len(one) == 4 for s in shards)
        for k, batch in enumerate(one):
            parts = [s[k] for s in shards]
            assert sorted(sum(parts, [])) == sorted(batch)  # the same images, split over the ranks
            assert len({i for p in parts for i in p}) == 16  # disjoint


def test_a_batch_that_does_not_split_evenly_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: 3)
    with pytest.raises(SegappError) as e:
        distributed.per_rank_batch(32)
    assert "--batch-size 32" in str(e.value) and "multiple of 3" in str(e.value) and "\n" not in str(e.value)
    assert distributed.per_rank_batch(33) == 11


def test_global_batch_loss_in_one_process_is_build_loss():
    """The loss DDP ranks use (sums over the global batch) is segapp's CE + Dice, voids and absent classes included."""
    torch.manual_seed(0)
    logits = torch.randn(6, 11, 16, 20, requires_grad=True)
    y = torch.randint(0, 10, (6, 16, 20))  # class 10 absent: its Dice term must count for nothing
    y[torch.rand(y.shape) < 0.2] = 255
    cfg = TrainConfig(dice_weight=0.7)
    a = build_loss(cfg)(logits, y)
    (ga,) = torch.autograd.grad(a, logits)
    b = global_batch_loss(cfg)(logits, y)
    (gb,) = torch.autograd.grad(b, logits)
    assert abs(a.item() - b.item()) < 1e-6
    assert (ga - gb).abs().max().item() < 1e-8


def test_cpu_sync_batchnorm_is_batchnorm_in_one_process():
    bn = torch.nn.BatchNorm2d(3)
    net = distributed.convert_sync_batchnorm_cpu(torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), bn))
    assert type(net[1]) is distributed.SyncBatchNormCPU and net[1].weight is bn.weight
    assert net[1].running_var is bn.running_var and net.state_dict().keys() == {
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"}
    x = torch.randn(4, 1, 8, 8)
    ref = torch.nn.Sequential(net[0], torch.nn.BatchNorm2d(3))
    ref[1].load_state_dict(bn.state_dict())
    assert torch.equal(net(x), ref(x))  # training mode, one process: BatchNorm2d itself
    assert torch.equal(net[1].running_mean, ref[1].running_mean)


def test_cpu_batchnorm_backward_is_the_float32_noise():
    """Why float32 runs are compared with a tolerance: torch's CPU BatchNorm backward in channels_last is ~1e-4
    relative off its float64 value on a 16-image 64x84 batch (about 1e-7 in contiguous layout)."""
    torch.manual_seed(0)
    x, g = torch.relu(torch.randn(16, 8, 64, 84) + 0.3), torch.randn(16, 8, 64, 84)
    grads = {}
    for dtype in (torch.float64, torch.float32):
        xx = x.to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
        torch.nn.BatchNorm2d(8).to(dtype)(xx).backward(g.to(dtype).contiguous(memory_format=torch.channels_last))
        grads[dtype] = xx.grad.double()
    err = ((grads[torch.float32] - grads[torch.float64]).abs().max() / grads[torch.float64].abs().max()).item()
    assert err > 1e-6, f"torch's CPU BatchNorm backward is now exact ({err:.1e}): tighten the float32 tolerances"


# ---- slow: real processes -----------------------------------------------------------------------------------------


def engine_run(world_size: int, rank: int, port: int, result: str) -> None:
    """Two epochs of segapp's training engine (its data, epoch loaders, loss, optimiser, schedule and DDP wrapping)
    on a float64 copy of the net, the steps of train_one_epoch without its float32 loss; rank 0 saves the weights."""
    from segapp.model import DilatedNet, NetConfig
    from segapp.train_config import build_data
    from segapp.train_loop import build_optimizer, build_scheduler, epoch_loader

    torch.set_num_threads(1)
    if world_size > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                          LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        distributed.init(torch.device("cpu"))
    cfg = TrainConfig(widths=(8,) * 7, epochs=2, train_size=64, val_size=16, batch_size=16, wild=0.0,
                      augment=False, amp="off").resolved()
    torch.manual_seed(cfg.seed)
    model = DilatedNet(NetConfig(widths=cfg.widths)).double().to(memory_format=torch.channels_last)
    train_set, _ = build_data(cfg)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, len(train_set) // cfg.batch_size)
    net = distributed.wrap(model, torch.device("cpu"))
    loss_fn = build_loss(cfg)
    for epoch in (1, 2):
        for x, y in epoch_loader(train_set, cfg, epoch):
            loss = loss_fn(net(x.double().contiguous(memory_format=torch.channels_last)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    if distributed.is_main():
        torch.save(model.state_dict(), result)
    distributed.cleanup()


def _spawned(rank: int, port: int, result: str) -> None:
    engine_run(2, rank, port, result)


@pytest.mark.slow
def test_engine_two_ranks_equal_one_rank_in_float64(tmp_path):
    """Sharded data + synchronised BatchNorm + global-batch loss + DDP averaging = one process, to float64 rounding
    (8 AdamW steps on the real training data)."""
    import torch.multiprocessing as mp

    engine_run(1, 0, 0, str(tmp_path / "one.pt"))
    mp.spawn(_spawned, args=(free_port(), str(tmp_path / "two.pt")), nprocs=2)
    one, two = (torch.load(tmp_path / n, weights_only=True) for n in ("one.pt", "two.pt"))
    start = initial_weights()
    floats = [k for k, v in one.items() if v.is_floating_point()]
    moved = max_diff({k: one[k] for k in floats}, {k: start[k] for k in floats})
    diff = max_diff(one, two)
    print(f"float64 engine: max |w_2proc - w_1proc| = {diff:.1e}, weights moved up to {moved:.1e}")
    assert diff < 1e-10 and moved > 1e-2


def initial_weights() -> dict:
    from segapp.model import DilatedNet, NetConfig

    torch.manual_seed(0)
    return DilatedNet(NetConfig(widths=(8,) * 7)).double().state_dict()


def _cycle_then_cleanup(rank: int, port: int, result: str) -> None:
    """A DDP wrapper left in a reference cycle (as the training engine's is), then cleanup: is it still alive?"""
    import gc
    import weakref

    gc.disable()  # only cleanup may collect
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    distributed.init(torch.device("cpu"))
    net = distributed.wrap(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), torch.device("cpu"))
    net.__dict__["itself"] = net  # the cycle
    alive = weakref.ref(net)
    del net
    distributed.cleanup()
    Path(f"{result}.{rank}").write_text(str(alive() is not None))


def test_cleanup_frees_ddp_wrappers_before_the_group_goes(tmp_path):
    """A DDP wrapper in a reference cycle holds the process group; unless cleanup collects it, the group and its gloo
    threads die during interpreter shutdown, where rank 0 aborted ("terminate called without an active
    exception") after a finished run, once in a few CI runs."""
    import torch.multiprocessing as mp

    mp.spawn(_cycle_then_cleanup, args=(free_port(), str(tmp_path / "alive")), nprocs=2)
    assert [(tmp_path / f"alive.{r}").read_text() for r in (0, 1)] == ["False", "False"]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    r = subprocess.run([sys.executable, "-m", "segapp", "train", *TINY, "--out", str(out)], cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> tuple[Path, Path, str]:
    """Two processes launched as torchrun does (its environment variables), except that rank 1 is given another
    --out: it must never be created, so whatever rank 1 did, it wrote nothing."""
    base = tmp_path_factory.mktemp("ddp")
    out, elsewhere, port = base / "run", base / "rank1-out", free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "segapp", "train", *TINY, "--out", str(o)], cwd=ROOT,
                              env=env(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2",
                                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r, o in ((0, out), (1, elsewhere))]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(s[-3000:] for s in logs)
    return out, elsewhere, "\n".join(logs)


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(single, ddp):
    out = ddp[0]
    one, two = log_rows(single), log_rows(out)
    assert [r["epoch"] for r in two] == ["1", "2", "3"]
    loss_gap = max(abs(float(a["train_loss"]) / float(b["train_loss"]) - 1) for a, b in zip(one, two))
    diff = max_diff(weights(single), weights(out))
    print(f"float32 CLI: train loss rel. gap {loss_gap:.1e}, max |w_2proc - w_1proc| = {diff:.1e}")
    assert loss_gap < 1e-4
    assert diff < 2e-2  # float32 noise through AdamW (see the module docstring): measured 2e-3..4e-3
    assert abs(float(one[-1]["val_miou_digits"]) - float(two[-1]["val_miou_digits"])) < 0.01


@pytest.mark.slow
def test_only_rank_0_prints_and_writes(ddp):
    out, elsewhere, log = ddp
    assert not elsewhere.exists()  # rank 1 never touched its --out
    for name in set(RUN_FILES) - set(BLEND_FILES):  # not a fine-tuning run: no blend
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp*"))
    for epoch in (1, 2, 3):
        assert log.count(f"epoch {epoch}/3: train loss") == 1, log  # one progress line per epoch, from rank 0
    assert log.count("DDP over 2 processes (8 images each per batch)") == 1
    assert log.count("test (M2NIST-recipe test split") == 1


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the training process with RANK=rank under ``parent`` (torchrun), from /proc."""
    children, todo = [], [parent]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            children += kids
            todo += kids
    for pid in children:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"segapp" in cmd:
            return pid
    return None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers in /proc")
def test_torchrun_killed_rank_resumes_to_the_uninterrupted_weights(tmp_path, ddp):
    """torchrun --nproc_per_node 2; rank 1 is SIGKILLed once epoch 1 is checkpointed, torchrun stops rank 0; the same
    torchrun command with --resume ends with exactly the weights of the uninterrupted two-process run."""
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "segapp", "train"]
    proc = subprocess.Popen([*torchrun, *TINY, "--out", str(out)], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, victim = time.monotonic() + 300, None
        while not (out / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        victim = _rank_pid(proc.pid, 1)
        assert victim is not None, "rank 1 not found"
        os.kill(victim, signal.SIGKILL)
        log = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, log[-3000:]
    stopped = torch.load(out / "last.pt", weights_only=True)["epoch"]
    assert 1 <= stopped < 3
    r = subprocess.run([*torchrun, "--out", str(out), "--resume"], cwd=ROOT, env=env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {out / 'last.pt'} after epoch {stopped}/3" in r.stderr
    assert [row["epoch"] for row in log_rows(out)] == ["1", "2", "3"]  # no lost or repeated rows
    diff = max_diff(weights(out), weights(ddp[0]))
    print(f"killed after epoch {stopped} + --resume vs uninterrupted (2 processes): max |dw| = {diff:.1e}")
    assert diff == 0.0
    assert np.isclose(float(log_rows(out)[-1]["train_loss"]), float(log_rows(ddp[0])[-1]["train_loss"]), rtol=0)
