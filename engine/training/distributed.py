"""Data parallelism over torch.distributed: the processes of one run and what they exchange.

Every process holds the whole scene and takes its share of each step's views or rays; the loop
sums the gradients (and a method's statistics) over processes before one identical optimiser step
everywhere, so the processes stay bit-identical without ever sending parameters. Rank 0 alone
writes the run directory. torchrun (or `--nproc`, which runs torchrun's launcher) starts the
processes; gloo carries CPU tensors, NCCL CUDA ones.

What crosses the wire is tensors only: objects travel as `torch.save` bytes and are read back with
`weights_only=True`, as checkpoints are.
"""
from __future__ import annotations

import datetime
import io
import os
import time

import torch
from torch import Tensor

from engine.errors import PeerLost, Silent


COALESCE = 1 << 20  # tensors smaller than this (elements) travel together in one buffer


def torchrun_env() -> bool:
    """Whether this process was started by torchrun (or `--nproc`) as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Processes:
    """The processes of a run: one (no torch.distributed at all) or a torchrun group.

    `seconds` and `bytes` count the time spent in (started or waited for), and the payload of, the
    exchanges.
    """

    def __init__(self, rank: int = 0, world: int = 1, local_world: int = 1):
        self.rank, self.world, self.local_world = rank, world, local_world
        self.seconds, self.bytes = 0.0, 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def start(device: str = "cpu", timeout_s: float = 300.0) -> "Processes":
        """Join the torchrun group of this process (one process when not started by torchrun)."""
        if not torchrun_env():
            return Processes()
        import torch.distributed as dist

        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as e:
            raise PeerLost(f"could not join the other processes ({_reason(e)})") from None
        return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_WORLD_SIZE", 1)))

    def leave(self) -> None:
        """The end of the exchanges: every process waits for the others, then the group is taken
        down (a process that tears down its side while another still talks to it aborts in gloo)."""
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                self._call("barrier", dist.barrier, 0)
        self.close()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    # ------------------------------------------------------------------ collectives
    def _call(self, what: str, fn, payload: int):
        t = time.perf_counter()
        try:
            out = fn()
        except Exception as e:  # gloo and NCCL raise RuntimeError subclasses on a closed peer or timeout
            raise PeerLost(f"{what}: lost contact with another process of the run ({_reason(e)})") from None
        self.seconds += time.perf_counter() - t
        self.bytes += payload
        return out

    def all_reduce(self, tensors: list[Tensor], op: str = "sum") -> None:
        """Reduce `tensors` in place over the processes (sum or max). Small ones share one buffer."""
        self.start_all_reduce(tensors, op).wait()

    def start_all_reduce(self, tensors: list[Tensor], op: str = "sum") -> "Pending":
        """`all_reduce` that returns at once: the exchange runs in the background (gloo's and NCCL's
        own threads, in the order started) until `wait()`, so a method can step the optimiser of
        what has arrived while the rest is in flight."""
        if self.world == 1 or not tensors:
            return Pending(self, [])
        import torch.distributed as dist

        red = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
        jobs = []

        def start(buf: Tensor, after=None):
            work = self._call("all-reduce", lambda: dist.all_reduce(buf, red, async_op=True),
                              buf.numel() * buf.element_size())
            jobs.append((work, after))

        by_dtype: dict = {}
        for t in tensors:
            if t.numel() >= COALESCE:
                start(t)
            else:
                by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])

            def unpack(flat=flat, group=group):
                for t, part in zip(group, flat.split([t.numel() for t in group])):
                    t.copy_(part.view_as(t))
            start(flat, unpack)
        return Pending(self, jobs)

    @staticmethod
    def gradients(params) -> list[Tensor]:
        """The gradients of `params`, to be summed (with whatever else a step sums) in one
        `all_reduce`: a missing one becomes zeros, on every process alike."""
        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        return grads

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's `data` on every process."""
        if self.world == 1:
            return data or b""
        import torch.distributed as dist

        n = torch.tensor([len(data or b"") if self.main else 0], dtype=torch.int64)
        self._call("broadcast", lambda: dist.broadcast(n, 0), 8)
        buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.main and n.item()
               else torch.empty(int(n.item()), dtype=torch.uint8))
        if n.item():
            self._call("broadcast", lambda: dist.broadcast(buf, 0), int(n.item()))
        return bytes(buf.numpy()) if n.item() else b""

    def gather_bytes(self, data: bytes) -> list[bytes] | None:
        """Every process's `data`, in rank order, on rank 0 (None elsewhere)."""
        if self.world == 1:
            return [data]
        import torch.distributed as dist

        n = torch.tensor([len(data)], dtype=torch.int64)
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
        self._call("all-gather", lambda: dist.all_gather(sizes, n), 8 * self.world)
        longest = max(int(s.item()) for s in sizes)
        buf = torch.zeros(longest, dtype=torch.uint8)
        buf[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else buf[:0]
        out = [torch.empty(longest, dtype=torch.uint8) for _ in range(self.world)] if self.main else None
        self._call("gather", lambda: dist.gather(buf, out, dst=0), longest)
        if not self.main:
            return None
        return [bytes(o[:int(s.item())].numpy()) for o, s in zip(out, sizes)]

    def gather(self, obj) -> list | None:
        """`gather_bytes` of tensors and plain containers (packed with torch.save, read back safely)."""
        if self.world == 1:
            return [obj]
        parts = self.gather_bytes(pack(obj))
        return None if parts is None else [unpack(p) for p in parts]

    def broadcast(self, obj):
        """Rank 0's `obj` (tensors and plain containers) on every process."""
        if self.world == 1:
            return obj
        return unpack(self.broadcast_bytes(pack(obj) if self.main else None))

    def agree(self, error: str | None) -> None:
        """Rank 0's verdict on a step only it takes (making the run directory): every process raises
        its error, so none waits for a rank 0 that has gone."""
        message = self.broadcast_bytes(error.encode() if error else None).decode()
        if message and not self.main:
            raise Silent(message)

    # ------------------------------------------------------------------ accounting
    def counters(self) -> tuple[float, int]:
        return self.seconds, self.bytes


class Pending:
    """Exchanges in flight (`Processes.start_all_reduce`); `wait()` once, before using the tensors."""

    def __init__(self, group: Processes, jobs: list):
        self.group, self.jobs = group, jobs

    def wait(self) -> None:
        for work, after in self.jobs:
            self.group._call("all-reduce", work.wait, 0)
            if after is not None:
                after()
        self.jobs = []


def pack(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def unpack(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=True)


def _reason(e: Exception) -> str:
    """gloo's and NCCL's message without their source locations and advice."""
    import re

    line = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
    line = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", line).split(". This is typically")[0]
    return line[:200]


def default_threads(local_world: int) -> int:
    """Threads per process: the cores this process may use, shared by the processes on its machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(local_world, 1))
