"""The durable event log, the live user states it feeds, and folding it into a dataset.

The service records every event (a user's click, view, save, share of an item) in an
append-only log of JSON lines, one event a line::

    {"seq": 17, "user_id": "u0042", "item_id": "i0137", "event": "full_view",
     "timestamp": 1714003200, "event_id": "c0ffee", "logged_at": 1733539200.12}

* ``seq`` numbers the events of the log 1, 2, 3, ... (assigned under an exclusive ``flock`` of
  the file, so several server processes can share one log); ``event_id`` is the client's own
  idempotency key when it sent one (a second event with the same key is not logged again);
  ``logged_at`` is the wall-clock second it was written; ``timestamp`` is the event's time on
  the service's clock (the data's clock: see :class:`ServiceClock`).
* :meth:`EventLog.append` writes the whole line with one ``write`` on an ``O_APPEND``
  descriptor and ``fsync`` s it before it returns: an event is acknowledged only once it is on
  disk.
* A process killed in the middle of a write leaves a last line without its newline (torn).
  Readers never take a line before its newline; the next writer, holding the lock, cuts the
  torn tail off before it appends. Such an event was never acknowledged.
* Readers keep a byte offset (:meth:`EventLog.read_new`), so a server replays the log on start
  and then takes only what was appended since: its own events and those of other processes.

:class:`LiveStates` keeps, per user with events, their :class:`~streamrec.serve.state.UserState`:
the history the system knows plus the logged events (for a user the dataset does not know, the
events alone). :func:`ingest_events` folds a log into a dataset for retraining.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import ENGAGEMENT_TYPES, Dataset
from streamrec.serve.state import HistoryIndex, UserState

#: the fields every log line has (``event_id`` is optional)
RECORD_FIELDS = ("seq", "user_id", "item_id", "event", "timestamp")
ENGAGEMENT_CODE = {name: code for code, name in enumerate(ENGAGEMENT_TYPES)}


class EventLogError(OSError):
    """The log cannot be written (disk full, permissions): the event was not recorded."""


def parse_record(line: bytes) -> dict[str, Any] | None:
    """One log line as a record, or None when it is not a valid event line."""
    try:
        rec = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or any(f not in rec for f in RECORD_FIELDS):
        return None
    if not (isinstance(rec["seq"], int) and isinstance(rec["timestamp"], int)
            and isinstance(rec["user_id"], str) and isinstance(rec["item_id"], str)
            and rec["event"] in ENGAGEMENT_CODE):
        return None
    return rec


@dataclass
class EventLog:
    """An append-only JSON-lines event log (see the module docstring).

    path: the file (created with its folder on first use). Thread-safe; several processes may
    append to the same file.
    """

    path: Path
    #: lines that were complete but not valid events (skipped), and torn tails cut off
    skipped: int = 0
    torn: int = 0
    _read_end: int = 0
    _scan_end: int = 0
    _last_seq: int = 0
    _ids: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fd: int = -1
    #: where this process's write in progress starts (readers stop there until it is synced)
    _inflight: int | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as e:
            raise EventLogError(f"cannot open the event log {self.path}: {e.strerror}") from None
        if not existed:  # the new file's directory entry must be durable too
            _fsync_dir(self.path.parent)
        with self._exclusive():
            self._scan()
            self._cut_torn_tail()

    # ------------------------------------------------------------------ writing
    def append(self, user_id: str, item_id: str, event: str, timestamp: int,
               event_id: str | None = None) -> tuple[dict[str, Any], bool]:
        """Write one event and ``fsync`` it; returns (its record, False), or (the record logged
        earlier under the same ``event_id``, True) without writing. Raises
        :class:`EventLogError` when it cannot be written (then nothing was recorded)."""
        with self._lock, self._exclusive():
            self._scan()  # what other processes appended since: sequence numbers and keys
            if event_id is not None and event_id in self._ids:
                return self._find(event_id), True
            self._cut_torn_tail()
            rec = {"seq": self._last_seq + 1, "user_id": user_id, "item_id": item_id,
                   "event": event, "timestamp": int(timestamp)}
            if event_id is not None:
                rec["event_id"] = event_id
            rec["logged_at"] = round(time.time(), 3)
            line = (json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
            start = os.fstat(self._fd).st_size
            self._inflight = start
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(28, "short write")
                os.fsync(self._fd)
            except OSError as e:
                try:  # leave no trace of the event: it is not acknowledged
                    os.ftruncate(self._fd, start)
                    os.fsync(self._fd)
                except OSError:
                    pass
                raise EventLogError(f"the event log {self.path} cannot be written: "
                                    f"{e.strerror or e}") from None
            finally:
                self._inflight = None
            self._scan_end = start + len(line)
            self._last_seq = rec["seq"]
            if event_id is not None:
                self._ids.add(event_id)
            return rec, False

    # ------------------------------------------------------------------ reading
    def read_new(self) -> list[dict[str, Any]]:
        """The valid records of the complete lines appended since the last call (the whole
        log on the first), oldest first."""
        size = os.fstat(self._fd).st_size
        inflight = self._inflight  # read after the size: a line seen is synced or stopped at
        if inflight is not None:
            size = min(size, inflight)
        if size <= self._read_end:
            return []
        data = os.pread(self._fd, size - self._read_end, self._read_end)
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self._read_end += end + 1
        out = []
        for line in data[: end + 1].splitlines():
            rec = parse_record(line)
            if rec is None:
                if line.strip():
                    self.skipped += 1
                continue
            out.append(rec)
        return out

    def records(self) -> Iterator[dict[str, Any]]:
        """Every valid record of the log, from the start (independent of :meth:`read_new`)."""
        yield from read_records(self.path)

    @property
    def size(self) -> int:
        return os.fstat(self._fd).st_size

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------------ internals
    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The file's exclusive lock (between processes; threads hold ``_lock`` too)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _scan(self) -> None:
        """Read the complete lines past ``_scan_end`` for the last ``seq`` and the keys."""
        size = os.fstat(self._fd).st_size
        if size <= self._scan_end:
            return
        data = os.pread(self._fd, size - self._scan_end, self._scan_end)
        end = data.rfind(b"\n")
        if end < 0:
            return
        for line in data[: end + 1].splitlines():
            try:  # any line with a number counts, valid event or not: numbers never repeat
                rec = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(rec, dict) and isinstance(rec.get("seq"), int):
                self._last_seq = max(self._last_seq, rec["seq"])
                if isinstance(rec.get("event_id"), str):
                    self._ids.add(rec["event_id"])
        self._scan_end += end + 1

    def _cut_torn_tail(self) -> None:
        """Cut a last line without its newline (a writer died in the middle); the lock is
        held and every complete line scanned."""
        size = os.fstat(self._fd).st_size
        if size > self._scan_end:
            os.ftruncate(self._fd, self._scan_end)
            os.fsync(self._fd)
            self.torn += 1

    def _find(self, event_id: str) -> dict[str, Any]:
        for rec in read_records(self.path):
            if rec.get("event_id") == event_id:
                return rec
        raise KeyError(event_id)  # pragma: no cover - the key came from the log


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The valid records of a log file, oldest first (complete lines only)."""
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break  # a torn last line: never acknowledged
            rec = parse_record(line)
            if rec is not None:
                yield rec


# ============================================================================ the clock
class ServiceClock:
    """The service's clock on the data's time axis: the latest time the system knows (the
    history's last event, the events logged so far) plus the seconds since the service
    started; an event with a later explicit timestamp moves it forward."""

    def __init__(self, latest: int) -> None:
        self.base = int(latest)
        self.started = time.monotonic()
        self.latest = int(latest)

    def now(self) -> int:
        return max(self.base + int(time.monotonic() - self.started), self.latest)

    def saw(self, timestamp: int) -> None:
        if timestamp > self.latest:
            self.latest = int(timestamp)


# ============================================================================ live states
class LiveStates:
    """Users' states: what the history holds plus the events logged since.

    dataset / history / index: the served system's dataset, the history it serves from and a
    :class:`~streamrec.serve.state.HistoryIndex` of it. Users are addressed by original id;
    an id the dataset does not know is a new user (internal id -1), known once they have an
    event.
    """

    def __init__(self, dataset: Dataset, history: Dataset, index: HistoryIndex) -> None:
        self.ds = dataset
        self.history = history
        self.index = index
        self.states: dict[str, UserState] = {}
        #: per user: the logged events applied (seq, item, event, timestamp), oldest first
        self.logged: dict[str, list[tuple[int, int, int, int]]] = {}
        self.applied = 0
        self.last_seq = 0
        self.ignored = 0  # events naming an item the catalogue does not have
        self.repeated = 0  # events already in the history (folded in and retrained)

    def internal_user(self, user_id: str) -> int:
        """The dataset's id of a user, -1 for a user it does not know."""
        try:
            return self.ds.user_index(user_id)
        except KeyError:
            return -1

    def knows(self, user_id: str) -> bool:
        return user_id in self.states or self.internal_user(user_id) >= 0

    def state(self, user_id: str) -> UserState:
        """The user's state (history + logged events); an unknown user's is empty."""
        s = self.states.get(user_id)
        if s is not None:
            return s
        u = self.internal_user(user_id)
        return self.index.state(u) if u >= 0 else UserState(-1)

    def apply(self, records: Iterable[dict[str, Any]]) -> int:
        """Apply log records in order (a record already applied, by ``seq``, is skipped);
        returns how many were applied."""
        per_user: dict[str, list[tuple[int, int, int, int]]] = {}
        for rec in records:
            if rec["seq"] <= self.last_seq:
                continue
            self.last_seq = rec["seq"]
            try:
                item = self.ds.item_index(rec["item_id"])
            except KeyError:
                self.ignored += 1
                continue
            user_id, ts = rec["user_id"], int(rec["timestamp"])
            u = self.internal_user(user_id)
            if u >= 0:
                # an event folded into the dataset (and the system rebuilt) is in the history
                base = self.index.state(u)
                if ((base.items == item) & (base.timestamps == ts)).any():
                    self.repeated += 1
                    continue
            per_user.setdefault(user_id, []).append(
                (rec["seq"], item, ENGAGEMENT_CODE[rec["event"]], ts))
        n = 0
        for user_id, events in per_user.items():  # one new state per user (a replay is fast)
            ev = np.array(events, dtype=np.int64).reshape(-1, 4)
            self.states[user_id] = self.state(user_id).with_events(ev[:, 1], ev[:, 3], ev[:, 2])
            self.logged.setdefault(user_id, []).extend(events)
            n += len(events)
        self.applied += n
        return n

    def new_users(self) -> list[str]:
        """Users known only through their events, in order of their first event."""
        return [u for u in self.logged if self.internal_user(u) < 0]


# ============================================================================ folding
def _identity(rec: dict[str, Any]) -> list[Any]:
    """What tells a log's first event apart from another log's."""
    return [rec["seq"], rec["user_id"], rec["item_id"], rec["timestamp"], rec.get("logged_at")]


def ingest_events(log: str | Path, dataset: str | Path, out: str | Path | None = None
                  ) -> dict[str, Any]:
    """Fold an event log into a dataset for retraining; returns a summary.

    The events become interactions (user, item, timestamp, engagement; sessions by 30-minute
    gaps with new session ids); users the dataset does not know are added (their side columns:
    NaN for float columns, the most common value for integer ones, ``signup_ts`` = their first
    event, "" for text). The dataset's ``meta["event_log"]`` records the log and the last
    ``seq`` folded (and the log's first event, to tell a new log at the same path apart), so
    folding the same log again adds only the newer events; an event already in the dataset
    (same user, item and time) is never added twice. ``out``: write a
    new dataset directory there (default: replace ``dataset`` in place, atomically, keeping its
    other files such as ``truth/``).
    """
    import shutil

    from streamrec.data.dataset import atomic_dir, load_dataset, write_dataset_files
    from streamrec.data.features import sessions_from_gaps

    log = Path(log)
    if not log.is_file():
        raise FileNotFoundError(f"event log {log} does not exist")
    ds = load_dataset(dataset)
    src = Path(dataset)
    previous = ds.meta.get("event_log") or {}
    every = list(read_records(log))
    # the same log, not a new one at the same path: its first event is the one recorded
    first = _identity(every[0]) if every else None
    same_log = previous.get("path") == str(log.resolve()) and previous.get("first") == first
    since = int(previous.get("through_seq", 0)) if same_log else 0
    recs = [r for r in every if r["seq"] > since]
    unknown = sorted({r["item_id"] for r in recs} - set(ds.item_ids.tolist()))
    if unknown:
        raise ValueError(f"{len(unknown)} item id(s) of the log are not in dataset {ds.name!r} "
                         f"(e.g. {unknown[0]!r}): fold a log into the dataset of the system "
                         "that wrote it")
    users = list(ds.user_ids)
    user_index = {u: i for i, u in enumerate(users)}
    new_users: list[str] = []
    first_ts: dict[str, int] = {}
    for r in recs:
        if r["user_id"] not in user_index:
            user_index[r["user_id"]] = len(users)
            users.append(r["user_id"])
            new_users.append(r["user_id"])
        first_ts[r["user_id"]] = min(first_ts.get(r["user_id"], r["timestamp"]), r["timestamp"])
    n = len(recs)
    u = np.array([user_index[r["user_id"]] for r in recs], dtype=np.int64)
    i = np.array([ds.item_index(r["item_id"]) for r in recs], dtype=np.int64)
    t = np.array([r["timestamp"] for r in recs], dtype=np.int64)
    e = np.array([ENGAGEMENT_CODE[r["event"]] for r in recs], dtype=np.int64)
    # events already in the dataset (same user, item and time) are not added twice
    old_keys = set(zip(ds.user.tolist(), ds.item.tolist(), ds.timestamp.tolist()))
    keep = np.array([(a, b, c) not in old_keys for a, b, c in zip(u, i, t)], dtype=bool) \
        if n else np.zeros(0, bool)
    u, i, t, e = u[keep], i[keep], t[keep], e[keep]
    added = int(keep.sum())
    inter: dict[str, np.ndarray] = {}
    for col, arr in ds.inter.items():
        if col == "user":
            extra = u
        elif col == "item":
            extra = i
        elif col == "timestamp":
            extra = t
        elif col == "engagement":
            extra = e
        elif col == "session":
            order = np.lexsort((t, u))
            sess = np.empty(added, np.int64)
            start = int(arr.max()) + 1 if len(arr) else 0
            sess[order] = sessions_from_gaps(u[order], t[order]) + start
            extra = sess
        elif arr.dtype.kind == "f":
            extra = np.full(added, np.nan)
        else:
            extra = np.zeros(added, dtype=arr.dtype)
        inter[col] = np.concatenate([arr, extra.astype(arr.dtype)])
    side = {}
    for col, arr in ds.users.items():
        m = len(new_users)
        if arr.ndim != 1:
            extra = np.zeros((m, *arr.shape[1:]), dtype=arr.dtype)
        elif col == "signup_ts":
            extra = np.array([first_ts[x] for x in new_users], dtype=arr.dtype)
        elif arr.dtype.kind == "f":
            extra = np.full(m, np.nan, dtype=arr.dtype)
        elif arr.dtype.kind in "iub":
            vals, counts = np.unique(arr, return_counts=True) if len(arr) else ([0], [1])
            extra = np.full(m, vals[int(np.argmax(counts))], dtype=arr.dtype)
        else:
            extra = np.array([""] * m, dtype=object)
        side[col] = np.concatenate([arr, extra]) if m else arr
    meta = dict(ds.meta)
    total = int(previous.get("events_folded", 0)) if same_log else 0
    meta["event_log"] = {"path": str(log.resolve()), "first": first,
                         "through_seq": max([since] + [r["seq"] for r in recs]),
                         "events_folded": total + added}
    folded = Dataset(name=ds.name, user_ids=np.array(users), item_ids=ds.item_ids, inter=inter,
                     items=ds.items, users=side, impressions=ds.impressions, meta=meta)
    target = Path(out) if out is not None else src
    standard = {"meta.json", "interactions.parquet", "items.parquet", "users.parquet",
                "impressions.parquet"}
    with atomic_dir(target, overwrite=out is None) as tmp:
        write_dataset_files(folded, tmp)
        for entry in src.iterdir():  # the dataset's other files (a world's truth/, ...)
            if entry.name in standard or entry.name.startswith("."):
                continue
            if entry.is_dir():
                shutil.copytree(entry, tmp / entry.name)
            else:
                shutil.copy2(entry, tmp / entry.name)
    return {"dataset": str(target), "events_read": n,
            "events_added": added, "events_already_there": n - added,
            "new_users": len(new_users), "n_users": len(users),
            "n_interactions": int(len(inter["user"])), "through_seq": meta["event_log"][
                "through_seq"]}
