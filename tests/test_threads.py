"""The thread governor: beside busy processes our OpenMP threads would spin at barriers while their
partner waits for a core (Gaussian training fell to 10% of its idle speed here); the governor gives
cores back to the others and takes them again when they are idle."""
import os
import subprocess
import time

import pytest
import torch

from engine.threads import Governor


def test_the_thread_count_follows_the_cores_others_keep_busy(monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the decisions alone
    gov = Governor(max_threads=4)
    gov.cpus = {0, 1, 2, 3}
    gov.threads = 4
    seen = []
    for others in (0.2, 0.5, 0.7, 1.0, 0.9, 0.5, 0.2, 2.1, 3.5, 0.1, 0.0, 0.0):
        gov.decide(others)
        seen.append(gov.threads)
    # more than 0.6 of a core beyond what we leave them: give one up; back only under 0.3 of headroom
    assert seen == [4, 4, 3, 3, 3, 3, 4, 2, 1, 2, 3, 4]


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux, 2+ cores")
def test_busy_processes_take_threads_and_give_them_back(monkeypatch):
    monkeypatch.delenv("LUMEN3D_THREADS", raising=False)
    original = torch.get_num_threads()  # the suite's own governor may have lowered it
    full = len(os.sched_getaffinity(0))
    torch.set_num_threads(full)
    gov = Governor(max_threads=full)
    assert gov.enabled
    x = torch.randn(256, 256)

    def work_until(pred, seconds=8.0):
        t = time.monotonic()
        while time.monotonic() - t < seconds and not pred():
            gov.tick()
            for _ in range(20):
                x @ x
        return pred()

    work_until(lambda: False, 1.2)  # a baseline reading: the give-back below needs an otherwise idle machine
    idle = gov.others < 0.3
    n = len(gov.cpus) - 1
    busy = [subprocess.Popen(["sh", "-c", "exec yes > /dev/null"], start_new_session=True) for _ in range(n)]
    try:
        assert work_until(lambda: gov.threads == 1), (gov.threads, gov.others)
        assert torch.get_num_threads() == 1 and gov.others > 0.6 * n
    finally:
        for p in busy:
            p.kill()
            p.wait()
    came_back = work_until(lambda: gov.threads == full)
    torch.set_num_threads(original)
    if not idle:
        pytest.skip(f"other processes keep {gov.others:.1f} cores busy: cannot see the threads come back")
    assert came_back and gov.threads == full, (gov.threads, gov.others)


def test_a_pinned_thread_count_is_left_alone(monkeypatch):
    monkeypatch.setenv("LUMEN3D_THREADS", "fixed")
    gov = Governor(max_threads=2)
    assert not gov.enabled and gov.tick() == 2
