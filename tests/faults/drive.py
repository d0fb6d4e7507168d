"""The fault test's driver, run by compose/faults against a platform of its own.

Under a mixed load (createStream through the published client, each logical
creation keyed and retried with its key until answered; viewers asking /play
for the simulated edge's live demo stream; the edge's triggers and
telemetry), each fault named in FW_SERVERS happens in turn: a server stopped
with `compose/infra down X` for FW_OUTAGE_SECONDS and started again, Redis
wiped (`redis-wipe`), or one node of a three-node Kafka SIGKILLed and
started again (`kafka-broker`). Probes sample every role's /health, /play
and the write path throughout.

Printed per fault: each probe's recovery time, counted from the moment the
server answered again to the first success after its last failure; the
share of each probe's samples that failed while it was down; and the
requests that failed. Then checked:

- each role's /health named the server while a server it depends on was down;
- every probe recovers within FW_RECOVERY_SECONDS of the return (after a
  wipe, /play within WIPE_PLAY_LIMIT; after a broker kill, writes within
  FW_RECOVERY_SECONDS of the kill);
- nothing acknowledged is lost, nothing refused or left unanswered was
  applied, and no creation ran twice (ambiguous outcomes: must be 0);
- the control-plane read models equal a clean rebuild from the log
  (`frameworks replay control-plane`, then every table of the new
  generation compared with the one it replaced).

Exits non-zero, naming what failed, when a check does not hold.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import httpx
from livepeer_frameworks import FrameWorksClient, FrameWorksError, GraphQLError, RetryPolicy, paginate_relay
from livepeer_frameworks.graphql import ConnectionInput, CreateStreamInput

BRIDGE = os.environ["FW_BRIDGE"]
PLAY = os.environ["FW_PLAY"]
ROLES = dict(pair.split("=", 1) for pair in os.environ["FW_ROLES"].split())
SERVERS = os.environ["FW_SERVERS"].split()
OUTAGE = float(os.environ["FW_OUTAGE_SECONDS"])
RECOVERY_LIMIT = float(os.environ["FW_RECOVERY_SECONDS"])
INFRA = os.environ["FW_INFRA"]
FRAMEWORKS = os.environ["FW_FRAMEWORKS"]
DATABASE_URL = os.environ["FRAMEWORKS_DATABASE_URL"]
LOG_DIR = os.environ["FW_LOG_DIR"]

# The roles whose /health must name the server while it is down.
DEPENDENTS = {
    "postgres": ["relay", "projector", "bridge", "balancer"],
    "kafka": ["relay", "projector", "live-state", "analytics", "bridge", "balancer"],
    "redis": ["live-state", "bridge", "balancer"],
    "clickhouse": ["analytics", "bridge"],
    # Redis keeps answering; what it held is gone.
    "redis-wipe": [],
    # One of three brokers killed: the other two carry on, nobody is down.
    "kafka-broker": [],
}
# The broker SIGKILLed by the kafka-broker fault (of a 3-node cluster).
KILLED_BROKER = "kafka-2"
# After a wipe, routing is back within one heartbeat of the edge (10 s), plus
# the moments the live-state role takes to notice its register is gone.
WIPE_PLAY_LIMIT = 15.0
REDIS_URL = os.environ["FRAMEWORKS_REDIS_URL"]
WRITERS = 3
SAMPLE_SECONDS = 0.25
# Before each outage: load with everything up.
WARM_SECONDS = 5.0
# Recovered: every probe has held for this long.
SETTLED_SECONDS = 5.0
# How long one logical creation is retried with its key before it counts as unanswered.
CREATION_DEADLINE_SECONDS = 150.0
RUN = uuid.uuid4().hex[:8]


def now():
    return time.monotonic()


class Timeline:
    """Every probe's samples: (time, ok), in order."""

    def __init__(self):
        self.lock = threading.Lock()
        self.samples = {}

    def record(self, probe, ok):
        with self.lock:
            self.samples.setdefault(probe, []).append((now(), ok))

    def of(self, probe, start, end=float("inf")):
        with self.lock:
            return [(t, ok) for t, ok in self.samples.get(probe, []) if start <= t < end]

    def probes(self):
        with self.lock:
            return sorted(self.samples)

    def recovery(self, probe, returned):
        """Seconds from `returned` to the first success after the last
        failure; 0.0 if it never failed after `returned`; None if it has
        not succeeded since its last failure."""
        samples = self.of(probe, returned)
        failures = [t for t, ok in samples if not ok]
        if not failures:
            return 0.0
        last = failures[-1]
        after = [t for t, ok in samples if ok and t > last]
        return after[0] - returned if after else None

    def settled(self, probe, returned, at):
        """Succeeded since `returned`, with no failure in the last SETTLED_SECONDS."""
        samples = self.of(probe, returned)
        if not any(ok for _, ok in samples):
            return False
        return all(ok for t, ok in samples if t >= at - SETTLED_SECONDS)


@dataclass
class Creation:
    name: str
    key: str
    phase: str
    outcome: str | None = None  # visible, accepted (not yet visible), refused
    stream_id: str | None = None
    attempts: int = 0
    failed_attempts: int = 0


class Load:
    """The writers and the viewers, and the probes of every role's health."""

    def __init__(self, fw, timeline):
        self.fw = fw
        self.timeline = timeline
        self.phase = "start"
        self.stopping = threading.Event()
        self.creations = []
        self.errors = Counter()
        self.lock = threading.Lock()
        self.threads = []

    def start(self):
        for writer in range(WRITERS):
            self.spawn(self.write, writer)
        self.spawn(self.view)
        for role, listen in ROLES.items():
            self.spawn(self.watch_role, role, listen)

    def spawn(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=CREATION_DEADLINE_SECONDS + 30)

    def write(self, writer):
        n = 0
        while not self.stopping.is_set():
            n += 1
            creation = Creation(
                name=f"faults {RUN} {writer}-{n}", key=f"faults-{RUN}-{writer}-{n:06d}", phase=self.phase
            )
            with self.lock:
                self.creations.append(creation)
            self.create(creation)
            time.sleep(0.1)

    def create(self, creation):
        """Asks until answered, with the same key every time: a retry of a
        request that was applied answers the first result, never a second stream."""
        deadline = now() + CREATION_DEADLINE_SECONDS
        backoff = 0.25
        while now() < deadline:
            creation.attempts += 1
            try:
                result = self.fw.create_stream(
                    CreateStreamInput(name=creation.name), idempotency_key=creation.key
                ).create_stream
            except GraphQLError as error:
                if error.code == "ACCEPTED_NOT_VISIBLE":
                    extensions = error.errors[0].get("extensions", {})
                    creation.outcome, creation.stream_id = "accepted", extensions.get("resourceId")
                    self.timeline.record("writes", False)
                    self.count(creation.phase, "ACCEPTED_NOT_VISIBLE")
                    return
                self.failed(creation, error.code or "GraphQLError")
            except FrameWorksError as error:
                self.failed(creation, f"{type(error).__name__} {error.status or ''}".strip())
            else:
                if result.typename__ == "Stream":
                    creation.outcome, creation.stream_id = "visible", result.id
                    self.timeline.record("writes", True)
                else:
                    creation.outcome = "refused"
                    self.count(creation.phase, f"refused {result.typename__}: {result.message}")
                return
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def failed(self, creation, what):
        creation.failed_attempts += 1
        self.timeline.record("writes", False)
        self.count(creation.phase, what)

    def count(self, phase, what):
        with self.lock:
            self.errors[(phase, what)] += 1

    def view(self):
        with httpx.Client(timeout=5) as http:
            while not self.stopping.is_set():
                try:
                    answer = http.get(PLAY)
                    body = answer.json() if answer.status_code == 200 else {}
                    ok = body.get("live") is True and any(p["endpoints"] for p in body.get("protocols", []))
                except (httpx.HTTPError, ValueError):
                    ok = False
                self.timeline.record("play", ok)
                time.sleep(SAMPLE_SECONDS)

    def watch_role(self, role, listen):
        with httpx.Client(timeout=2) as http:
            while not self.stopping.is_set():
                try:
                    ok = http.get(f"http://{listen}/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.timeline.record(f"health {role}", ok)
                time.sleep(SAMPLE_SECONDS)


def infra(command, server):
    done = subprocess.run([INFRA, command, server], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"compose/infra {command} {server} failed:\n{done.stderr}")


def wipe_redis():
    port = REDIS_URL.rsplit(":", 1)[1]
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", port, "FLUSHALL"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or "OK" not in done.stdout:
        sys.exit(f"redis-cli FLUSHALL failed: {done.stdout} {done.stderr}")


def kill_broker():
    """SIGKILLs one Kafka node, as a crash would."""
    pid_file = os.path.join(os.environ["FRAMEWORKS_DATA_DIR"], "run", f"{KILLED_BROKER}.pid")
    try:
        with open(pid_file) as recorded:
            pid = int(recorded.readline())
    except (OSError, ValueError) as error:
        sys.exit(f"kafka-broker needs a 3-node Kafka (FRAMEWORKS_KAFKA_NODES=3): {pid_file}: {error}")
    os.kill(pid, signal.SIGKILL)


def wait_settled(timeline, since, limit):
    deadline = now() + limit
    while now() < deadline:
        if all(timeline.settled(probe, since, now()) for probe in timeline.probes()):
            return True
        time.sleep(SAMPLE_SECONDS)
    return False


def outage(load, timeline, server):
    """One fault and the recovery from it: what failed, and when each probe was back."""
    if not wait_settled(timeline, now() - SETTLED_SECONDS, 120):
        late = [p for p in timeline.probes() if not timeline.settled(p, now() - 120, now())]
        sys.exit(f"before stopping {server}: not everything was healthy: {late}")
    time.sleep(WARM_SECONDS)
    load.phase = server
    down = now()
    if server == "redis-wipe":
        wipe_redis()
    elif server == "kafka-broker":
        kill_broker()
        time.sleep(OUTAGE)
        infra("up", "kafka")
    else:
        infra("down", server)
        time.sleep(OUTAGE)
        infra("up", server)
    returned = now()
    what = {"redis-wipe": "wiped", "kafka-broker": f"{KILLED_BROKER} killed, back after {returned - down:.1f} s"}
    print(f"{server}: {what.get(server, f'down for {returned - down:.1f} s')}; recovering", flush=True)
    wait_settled(timeline, returned, RECOVERY_LIMIT + 30)
    recovery = {probe: timeline.recovery(probe, returned) for probe in timeline.probes()}
    # The share of each probe's samples that failed while the server was down.
    failing = {}
    for probe in timeline.probes():
        samples = timeline.of(probe, down, returned)
        failing[probe] = sum(1 for _, ok in samples if not ok) / len(samples) if samples else 0.0
    views_failed = sum(1 for _, ok in timeline.of("play", down) if not ok)
    views = len(timeline.of("play", down))
    return {
        "server": server,
        "down_seconds": returned - down,
        "views": views,
        "views_failed": views_failed,
        "recovery": recovery,
        # From the fault itself: a broker lost must not stall the writes.
        "writes_from_fault": timeline.recovery("writes", down),
        "failing": failing,
    }


def psql(sql):
    done = subprocess.run(
        ["psql", DATABASE_URL, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"psql failed: {done.stderr}\n{sql}")
    return [line for line in done.stdout.splitlines() if line]


def read_models_equal_a_rebuild():
    """Rebuilds the control-plane read models from the log into a new
    generation, then compares every table of it with the one it replaced:
    the rows that are in one and not in the other."""
    with open(os.path.join(LOG_DIR, "faults-replay.log"), "w") as log:
        done = subprocess.run(
            [FRAMEWORKS, "replay", "control-plane", "--keep-retired", "1"], stdout=log, stderr=log, check=False
        )
    if done.returncode != 0:
        sys.exit(f"frameworks replay control-plane failed; see {LOG_DIR}/faults-replay.log")
    live = psql(
        "SELECT generation FROM projection_generations WHERE projection = 'control-plane' AND state = 'live'"
    )
    retired = psql(
        "SELECT max(generation) FROM projection_generations WHERE projection = 'control-plane' AND state = 'retired'"
    )
    rebuilt, before = f"control_plane_g{live[0]}", f"control_plane_g{retired[0]}"
    tables = psql(
        "SELECT table_name FROM information_schema.tables "
        f"WHERE table_schema = '{rebuilt}' AND table_name LIKE 'rm\\_%' ORDER BY 1"
    )
    differences = {}
    rows = 0
    for table in tables:
        a, b = f"{rebuilt}.{table}", f"{before}.{table}"
        (count, differ) = psql(
            f"SELECT (SELECT count(*) FROM {a}), "
            f"(SELECT count(*) FROM ((TABLE {a} EXCEPT ALL TABLE {b}) UNION ALL (TABLE {b} EXCEPT ALL TABLE {a})) d)"
        )[0].split("|")
        rows += int(count)
        if int(differ):
            differences[table] = int(differ)
    return tables, rows, differences


def main():
    register = httpx.post(
        f"{BRIDGE}/auth/register",
        json={"email": f"faults-{RUN}@example.com", "password": "a long enough password", "tenantName": "Faults"},
        timeout=30,
    )
    if register.status_code != 201:
        sys.exit(f"register: {register.status_code} {register.text}")
    token = register.json()["token"]
    # Every attempt is the driver's own, so each is counted; the client's retries are off.
    fw = FrameWorksClient(
        f"{BRIDGE}/graphql", token=token, retry=RetryPolicy(max_attempts=1), http_client=httpx.Client(timeout=30)
    )
    timeline = Timeline()
    load = Load(fw, timeline)
    load.start()
    results = [outage(load, timeline, server) for server in SERVERS]
    load.phase = "end"
    time.sleep(WARM_SECONDS)
    load.stop()

    # --- figures -------------------------------------------------------------
    probes = timeline.probes()
    print("\nrecovery after the server answered again, in seconds (0.0: unaffected after its return):")
    print(f"  {'probe':<20}" + "".join(f"{r['server']:>12}" for r in results))
    for probe in probes:
        cells = "".join(
            f"{'never' if r['recovery'][probe] is None else format(r['recovery'][probe], '.1f'):>12}" for r in results
        )
        print(f"  {probe:<20}{cells}")
    print("\nfailing while the server was down, in % of samples (health must name what a role depends on):")
    print(f"  {'probe':<20}" + "".join(f"{r['server']:>12}" for r in results))
    for probe in probes:
        print(f"  {probe:<20}" + "".join(f"{100 * r['failing'][probe]:>11.0f}%" for r in results))
    print("\nrequests from each stop on (createStream by answer; ACCEPTED_NOT_VISIBLE is an acknowledgement):")
    for r in results:
        answers = {what: count for (phase, what), count in load.errors.items() if phase == r["server"]}
        failed = sum(count for what, count in answers.items() if what != "ACCEPTED_NOT_VISIBLE")
        print(
            f"  {r['server']:<11} down {r['down_seconds']:.1f} s: createStream {failed} failed, "
            f"{answers.get('ACCEPTED_NOT_VISIBLE', 0)} accepted not yet visible "
            f"({', '.join(f'{what} {count}' for what, count in sorted(answers.items())) or 'no other answers'}); "
            f"/play {r['views_failed']} of {r['views']} failed"
            + (
                f"; writes visible again {r['writes_from_fault']:.1f} s after the kill"
                if r["server"] == "kafka-broker" and r["writes_from_fault"] is not None
                else ""
            )
        )

    # --- checks --------------------------------------------------------------
    problems = []
    for r in results:
        for probe, seconds in r["recovery"].items():
            if seconds is None or seconds > RECOVERY_LIMIT:
                shown = "never" if seconds is None else f"after {seconds:.1f} s"
                problems.append(f"{probe} recovered {shown} from the {r['server']} outage (limit {RECOVERY_LIMIT:.0f} s)")

        if r["server"] == "kafka-broker":
            stalled = r["writes_from_fault"]
            if stalled is None or stalled > RECOVERY_LIMIT:
                problems.append(f"writes stalled for {stalled} s after a broker was killed (limit {RECOVERY_LIMIT:.0f} s)")
        wiped_play = r["recovery"].get("play")
        if r["server"] == "redis-wipe" and (wiped_play is None or wiped_play > WIPE_PLAY_LIMIT):
            problems.append(f"/play routed again {wiped_play} s after the Redis wipe (limit {WIPE_PLAY_LIMIT:.0f} s)")
        for role in DEPENDENTS[r["server"]]:
            if r["failing"].get(f"health {role}", 0.0) == 0.0:
                problems.append(f"{role}'s /health stayed ok while {r['server']} was down")

    creations = load.creations
    acknowledged = [c for c in creations if c.outcome in ("visible", "accepted")]
    unanswered = [c for c in creations if c.outcome is None]
    refused = [c for c in creations if c.outcome == "refused"]
    # The acknowledged creations show once the projector has caught up.
    deadline = now() + 60
    while True:
        listed = list(
            paginate_relay(lambda page: fw.list_streams(page=ConnectionInput(**page)).streams_connection, page_size=100)
        )
        ids = {s.id for s in listed}
        missing = [c for c in acknowledged if c.stream_id not in ids]
        if not missing or now() > deadline:
            break
        time.sleep(1)
    names = Counter(s.name for s in listed)
    twice = [name for name, count in names.items() if count > 1]
    applied_unanswered = [c for c in unanswered + refused if names[c.name]]
    ambiguous = len(twice) + len(applied_unanswered)
    print(
        f"\ncreations: {len(creations)} ({sum(c.attempts for c in creations)} attempts), "
        f"{len(acknowledged)} acknowledged ({sum(c.outcome == 'accepted' for c in creations)} as accepted, not yet visible), "
        f"{len(refused)} refused, {len(unanswered)} unanswered; streams listed {len(listed)}; "
        f"lost {len(missing)}, ambiguous outcomes {ambiguous}"
    )
    if missing:
        problems.append(f"{len(missing)} acknowledged creations are not listed: {[c.name for c in missing[:5]]}")
    if twice:
        problems.append(f"{len(twice)} creations ran twice: {twice[:5]}")
    if applied_unanswered:
        problems.append(
            f"{len(applied_unanswered)} creations never acknowledged were applied: {[c.name for c in applied_unanswered[:5]]}"
        )
    if unanswered:
        problems.append(f"{len(unanswered)} creations were never answered within {CREATION_DEADLINE_SECONDS:.0f} s")

    tables, rows, differences = read_models_equal_a_rebuild()
    print(f"read models against a clean rebuild: {len(tables)} tables, {rows} rows, differences {differences or 'none'}")
    if differences:
        problems.append(f"the read models differ from a clean rebuild: {json.dumps(differences)}")

    if problems:
        print("\nfault test FAILED:\n  " + "\n  ".join(problems), flush=True)
        sys.exit(1)
    print("\nfault test passed", flush=True)


if __name__ == "__main__":
    main()
