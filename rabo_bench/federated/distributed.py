"""Sharding the clients of one run over torch.distributed ranks (DESIGN.md §5).

Launched by ``torchrun`` (gloo when the run computes on the CPU, NCCL when on CUDA, one GPU a
rank), every rank holds the whole state, computes the same masks from the same random streams,
and simulates only its share of the clients (contiguous blocks) with its client simulator. The
server's masked aggregation becomes an all-reduce of the masked sums and counts
(:meth:`MaskedSum.all_reduce`); the per-client cost ledger is all-reduced at the end of the
round. A single sampled client (FedMBO's Neumann factor) is computed by its owner and broadcast.
Without an initialised process group of size > 1 the simulator is used as it is.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from rabo_bench.federated.clients import ClientSimulator


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: torch.device | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes (WORLD_SIZE > 1 in the environment):
    NCCL when the run's tensors are on the CUDA ``device`` (made this process's current GPU),
    else gloo (the CPU, the default), whatever the machine has. Returns (rank, world size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device is not None and device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return world()


def collective_device() -> torch.device:
    """Where tensors of the process group's collectives must lie: this process's GPU under
    NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def leave(together: bool = False) -> None:
    """Leave the process group, if this process joined one; ``together``: after a barrier, so
    no rank tears down gloo's threads while another still uses them (a rank that exits without
    leaving may abort in C++ at interpreter exit)."""
    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def shard(num_clients: int, rank: int, size: int) -> range:
    """Rank ``rank``'s contiguous block of clients (sizes differ by at most one)."""
    if size > num_clients:
        raise ValueError(f"{size} ranks for {num_clients} clients: use at most one rank a client")
    base, extra = divmod(num_clients, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


class Sharded(ClientSimulator):
    """``base`` on this rank's clients; sums, single-client results and the ledger shared."""

    def __init__(self, base: ClientSimulator, rank: int, size: int) -> None:
        self.base, self.rank, self.size = base, rank, size
        self.name = f"{base.name}, sharded over {size} ranks"

    def clients(self, ctx):
        return shard(ctx.problem.num_clients, self.rank, self.size)

    def run(self, phase, fn, clients):
        sums = self.base.run(phase, fn, clients)
        for key in sorted(sums):
            sums[key].all_reduce()
        return sums

    def one(self, phase, client, fn):
        size = len(phase.masks)
        owner = next(r for r in range(self.size) if client in shard(size, r, self.size))
        box = [super().one(phase, client, fn) if owner == self.rank else None]
        dist.broadcast_object_list(box, src=owner)
        return box[0]

    def finish_round(self, ctx) -> None:
        ledger = ctx.ledger
        table = torch.tensor(
            [
                [*c.as_dict().values(), down, up]
                for c, down, up in zip(
                    ledger.counters, ledger.params_down, ledger.params_up, strict=True
                )
            ],
            dtype=torch.long,
            device=collective_device(),
        )
        dist.all_reduce(table)
        for i, row in enumerate(table.tolist()):
            for name, value in zip(ledger.counters[i].as_dict(), row, strict=False):
                setattr(ledger.counters[i], name, value)
            ledger.params_down[i], ledger.params_up[i] = row[-2], row[-1]


def sharded(simulator: ClientSimulator) -> ClientSimulator:
    """``simulator`` sharded over the ranks of the initialised process group, if larger than one."""
    rank, size = world()
    return simulator if size == 1 else Sharded(simulator, rank, size)
