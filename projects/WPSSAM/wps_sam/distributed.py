"""Multi-process training on GPUs (detectron2's launch, NCCL) or on CPUs (gloo).

detectron2 v0.6's :func:`detectron2.engine.launch` asserts CUDA and uses NCCL, and its
:func:`create_ddp_model` passes ``device_ids=[local_rank]``, which DistributedDataParallel refuses
for a CPU module. :func:`launch` here keeps detectron2's behaviour when CUDA is available and
otherwise spawns the processes itself with the gloo backend, following ``detectron2.utils.comm``'s
conventions (global process group, ``comm._LOCAL_PROCESS_GROUP`` per machine), and makes
``create_ddp_model`` CPU-aware; everything built on comm (the trainer, the samplers,
``comm.all_gather``) then works unchanged.

    python tools/train_net.py --num-gpus 2 --config-file ...   # 2 processes: GPUs, else CPU

On CPU each process gets ``cpu_count // num_processes`` intra-op threads unless OMP_NUM_THREADS
is set.
"""

import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import defaults as d2_defaults
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

__all__ = ["launch", "create_ddp_model", "DEFAULT_TIMEOUT"]

logger = logging.getLogger(__name__)
DEFAULT_TIMEOUT = timedelta(minutes=30)
_d2_create_ddp_model = d2_defaults.create_ddp_model


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """detectron2's ``create_ddp_model``, with ``device_ids=None`` for a model on the CPU."""
    if comm.get_world_size() > 1 and "device_ids" not in kwargs:
        param = next(model.parameters(), None)
        if param is not None and param.device.type == "cpu":
            kwargs["device_ids"] = None
    return _d2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)


def _use_cpu_aware_ddp():
    # DefaultTrainer calls the name in detectron2.engine.defaults' namespace.
    d2_defaults.create_ddp_model = create_ddp_model


def _cpu_worker(
    local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout
):
    global_rank = machine_rank * num_per_machine + local_rank
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_per_machine))
    dist.init_process_group(
        backend="gloo",
        init_method=dist_url,
        world_size=world_size,
        rank=global_rank,
        timeout=timeout,
    )
    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // num_per_machine):
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    _use_cpu_aware_ddp()
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()


def launch(
    main_func,
    num_processes,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
    device=None,
):
    """Run ``main_func(*args)`` in ``num_processes`` processes per machine (DDP when > 1 in all).

    Args:
        main_func: a picklable (module-level) function.
        num_processes: processes per machine (``--num-gpus``): one per GPU on CUDA; any number on
            CPU.
        num_machines, machine_rank, dist_url, timeout: as in detectron2's launch;
            ``dist_url="auto"`` picks a free local port (one machine only).
        device: "cuda" or "cpu"; default: "cuda" when CUDA is available.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"launch: device must be 'cuda' or 'cpu', not {device!r}")
    world_size = num_machines * num_processes
    if device == "cuda" or world_size == 1:
        return d2_launch(
            main_func,
            num_processes,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=args,
            timeout=timeout,
        )
    if dist_url is None or dist_url == "auto":
        if num_machines > 1:
            raise ValueError("dist_url must be given (tcp://HOST:PORT) for several machines")
        from detectron2.engine.launch import _find_free_port

        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    logger.info(f"Launching {num_processes} CPU processes (gloo, {dist_url})")
    mp.spawn(
        _cpu_worker,
        nprocs=num_processes,
        args=(main_func, world_size, num_processes, machine_rank, dist_url, args, timeout),
        daemon=False,
    )
