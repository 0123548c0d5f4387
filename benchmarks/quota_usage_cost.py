"""What usage over time costs the accountant: reserve + reconcile per CPU second, in-process
and persisted (the ``in_process`` figure of ``benchmarks/quotas.py``), and the read of a month
of hourly buckets against ``user_status``.

The baseline is the same script run on a checkout without usage buckets, alternately in the
same session (see RESULTS.md: *Quota usage over time*)::

    for tree in /work/main /work/wt-console-quotas; do
      (cd $tree && PYTHONPATH=$tree .venv/bin/python benchmarks/quota_usage_cost.py 5000)
    done

CPU time (``process_time``), not wall time: the machine is shared and its load swings by 30.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

import rlm.quotas.service as s
from rlm.models.quotas import QuotaConfig
from rlm.quotas.service import QuotaLedgerService

n = int(sys.argv[1])
with tempfile.TemporaryDirectory() as d:
    led = QuotaLedgerService(Path(d) / "q.db")
    led.create_org("corp", "", None, 10**9, 10**6, 0.0)
    led.create_org("eng", "", "corp", 10**9, 10**6, 0.0)
    led.create_team("research", "Research", 10**9, 10**6, 0.0)
    led.add_member("research", "bench")
    big = 10**9
    led.set_user_config(
        QuotaConfig(
            user_id="bench",
            daily_agent_limit=big,
            weekly_agent_limit=big,
            monthly_agent_limit=big,
            daily_compute_hours=10**6,
            max_concurrent_agents=big,
            max_storage_gb=1.0,
        )
    )
    t0 = time.process_time()
    for _ in range(n):
        h = led.reserve(
            "bench", 5, tier="user", task_id=uuid.uuid4().hex, team_id="research", org_id="eng"
        )
        led.reconcile(h.reservation_id, 4, 0.001)
    rate = n / (time.process_time() - t0)
    extra = ""
    if hasattr(led, "usage_history") and "usage_history" in s.READS:
        t0 = time.process_time()
        for _ in range(200):
            led.usage_history("org", "corp", "monthly", "hour")
        hist = (time.process_time() - t0) / 200
        t0 = time.process_time()
        for _ in range(200):
            led.user_status("bench")
        status = (time.process_time() - t0) / 200
        extra = (
            f" usage_history_monthly_hour_ms={hist * 1000:.3f} user_status_ms={status * 1000:.3f}"
        )
    led.close()
print(f"{s.__file__.split('/')[2]} rate={rate:.0f}/s{extra}")
