"""pilake's per-device fold in pure Python (standard library only).

The same computation as the collector's (collector/stages/fold.go), so that
Databricks makes the same silver, silver_late and gold rows from bronze:

  window     tumbling, WINDOW_US wide: [floor(ts/W)*W, +W)
  watermark  per device: the largest event time seen from that device minus
             the allowed lateness, advanced after each LANDED BATCH (a
             bronze (device, boot, seq) group), never per Spark micro-batch,
             so the result does not depend on trigger timing
  final      a window is final when it starts before floor(watermark/W)*W;
             its silver row is emitted then, and gold rows (moving averages
             over the device's last N final windows) with it
  late       a reading whose window is already final goes to silver_late,
             with the device's watermark at the time
  sums       in the sensor's fixed-point units (0.01 degC, Pa/256, %RH/1024),
             so aggregates do not depend on arrival order
  nulls      pressure_pa and humidity_rh may be None (null in bronze: the
             Azure simulator sends no pressure, a BMP280 has no humidity);
             a window's pressure (humidity) aggregates are over its readings
             that have one, None when none has; gold averages the windows
             that have one; counts are every reading's

Rows are dicts with the lake's column names (collector/schema), timestamps in
microseconds. Boot ids stay Python ints (64-bit signed), never floats.

scripts/databricks/test_pilake_fold.py runs this on the vectors the Go fold
writes (collector/stages/testdata/fold_vectors.json) and requires the same
rows; pipeline_per_device_watermark.py is the Spark edge around it.
"""

import json

WINDOW_US = 1_000_000          # collector --window 1s
LATENESS_US = 10_000_000       # collector --allowed-lateness 10s
MOVING_AVERAGES = [8, 15, 60]  # collector --moving-averages 8,15,60


def _floor_div(a, b):
    return a // b  # Python's // floors, as the collector's floorDiv


class DeviceState:
    """One device's fold state: watermark, open windows and gold history."""

    __slots__ = ("max_event", "closed_before", "open", "hist", "folded")

    def __init__(self):
        self.max_event = None      # largest event time seen (us); None before the first reading
        self.closed_before = None  # windows starting before it are final; None: none yet
        # open windows: start -> [n, fresh, t_sum, t_min, t_max, p_n, p_sum, p_min, p_max, h_n, h_sum, h_min, h_max]
        # (p_n, h_n: readings with a pressure, a humidity; their min/max are None while 0)
        self.open = {}
        self.hist = []             # last max(N) final windows: [start, temp_avg, pressure_avg or None, humidity_avg or None]
        # landed batches folded: boot -> sorted disjoint [lo, hi] seq ranges, so that a second
        # copy of a batch in bronze (collectors appending bronze themselves can, after a crash,
        # each hold one) is not folded twice
        self.folded = {}

    def seen(self, boot, seq):
        return any(lo <= seq <= hi for lo, hi in self.folded.get(boot, ()))

    def mark(self, boot, seq):
        rs = sorted(self.folded.get(boot, []) + [[seq, seq]])
        merged = [rs[0]]
        for lo, hi in rs[1:]:
            if lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.folded[boot] = merged

    def to_json(self):
        return json.dumps({"max_event": self.max_event, "closed_before": self.closed_before,
                           "open": [[ws] + w for ws, w in sorted(self.open.items())], "hist": self.hist,
                           "folded": [[b, r] for b, r in sorted(self.folded.items())]})

    @classmethod
    def from_json(cls, s):
        d = json.loads(s)
        st = cls()
        st.max_event, st.closed_before = d["max_event"], d["closed_before"]
        st.open = {}
        for e in d["open"]:
            ws, w = e[0], e[1:]
            if len(w) == 11:  # state from before nullable pressure/humidity: every reading had both
                w = w[:5] + [w[0]] + w[5:8] + [w[0]] + w[8:]
            st.open[ws] = w
        st.hist = d["hist"]
        st.folded = {b: r for b, r in d.get("folded", [])}
        return st


class Fold:
    """Folds landed batches into silver, silver_late and gold rows.

    The rows made are appended to self.silver, self.silver_late and self.gold
    (callers take and clear them)."""

    def __init__(self, window_us=WINDOW_US, lateness_us=LATENESS_US, moving_averages=MOVING_AVERAGES):
        self.width = window_us
        self.lateness = lateness_us
        self.mas = list(moving_averages)
        self.max_n = max(self.mas) if self.mas else 0
        self.silver, self.silver_late, self.gold = [], [], []

    def watermark(self, st):
        return None if st.max_event is None else st.max_event - self.lateness

    def fold_batch(self, st, device, boot, seq, received_at, source, readings):
        """Folds one landed batch of device; readings are bronze's
        (ts, temp_c, pressure_pa, humidity_rh, fresh). Returns the number of
        late readings. A batch folded before (a second copy) is skipped."""
        if st.seen(boot, seq):
            return 0
        st.mark(boot, seq)
        n_late = 0
        max_ts = None
        for ts, temp_c, pressure_pa, humidity_rh, fresh in readings:
            max_ts = ts if max_ts is None else max(max_ts, ts)
            ws = _floor_div(ts, self.width) * self.width
            if st.closed_before is not None and ws < st.closed_before:
                n_late += 1
                self.silver_late.append({
                    "device": device, "ts": ts, "temp_c": temp_c, "pressure_pa": pressure_pa,
                    "humidity_rh": humidity_rh, "fresh": bool(fresh), "boot": boot, "seq": seq,
                    "received_at": received_at, "source": source, "window_start": ws,
                    "watermark": self.watermark(st)})
                continue
            # back to the sensor's integers (bronze holds raw/100, raw/256, raw/1024)
            t = round(temp_c * 100)
            w = st.open.get(ws)
            if w is None:
                w = st.open[ws] = [0, 0, 0, t, t, 0, 0, None, None, 0, 0, None, None]
            w[0] += 1
            w[1] += int(bool(fresh))
            w[2] += t
            w[3], w[4] = min(w[3], t), max(w[4], t)
            if pressure_pa is not None:
                p = round(pressure_pa * 256)
                w[5] += 1
                w[6] += p
                w[7], w[8] = (p, p) if w[7] is None else (min(w[7], p), max(w[8], p))
            if humidity_rh is not None:
                h = round(humidity_rh * 1024)
                w[9] += 1
                w[10] += h
                w[11], w[12] = (h, h) if w[11] is None else (min(w[11], h), max(w[12], h))
        if max_ts is not None and (st.max_event is None or max_ts > st.max_event):
            st.max_event = max_ts
        wm = self.watermark(st)
        if wm is not None:
            self._close_before(device, st, _floor_div(wm, self.width) * self.width)
        return n_late

    def close_device(self, device, st):
        """Finalises every open window of device (the collector does this
        at a clean shutdown; the Spark edge when a device stays silent)."""
        if st.max_event is None:
            return
        self._close_before(device, st, _floor_div(st.max_event, self.width) * self.width + self.width)

    def _close_before(self, device, st, cb):
        if st.closed_before is not None and cb <= st.closed_before:
            return
        for ws in sorted(st.open):
            if ws >= cb:
                break
            self._finalize(device, st, ws, st.open.pop(ws))
        st.closed_before = cb

    def _finalize(self, device, st, ws, w):
        n = float(w[0])
        row = {
            "device": device, "window_start": ws, "window_end": ws + self.width, "count": w[0], "fresh_count": w[1],
            "temp_avg": float(w[2]) / n / 100, "temp_min": float(w[3]) / 100, "temp_max": float(w[4]) / 100,
            "pressure_avg": None, "pressure_min": None, "pressure_max": None,
            "humidity_avg": None, "humidity_min": None, "humidity_max": None,
        }
        if w[5] > 0:
            row["pressure_avg"] = float(w[6]) / float(w[5]) / 256
            row["pressure_min"], row["pressure_max"] = float(w[7]) / 256, float(w[8]) / 256
        if w[9] > 0:
            row["humidity_avg"] = float(w[10]) / float(w[9]) / 1024
            row["humidity_min"], row["humidity_max"] = float(w[11]) / 1024, float(w[12]) / 1024
        self.silver.append(row)
        if self.max_n == 0:
            return
        if len(st.hist) == self.max_n:
            del st.hist[0]
        st.hist.append([ws, row["temp_avg"], row["pressure_avg"], row["humidity_avg"]])
        for n_ma in self.mas:
            h = st.hist[-n_ma:]
            t = p = hu = 0.0
            np = nh = 0
            for e in h:
                t += e[1]
                if e[2] is not None:
                    p += e[2]
                    np += 1
                if e[3] is not None:
                    hu += e[3]
                    nh += 1
            self.gold.append({"device": device, "window_start": h[-1][0], "n": n_ma, "windows": len(h),
                              "temp_c": t / float(len(h)), "pressure_pa": p / float(np) if np else None,
                              "humidity_rh": hu / float(nh) if nh else None})


def batches_in_order(rows):
    """Groups one device's bronze rows into landed batches, in landing order.

    rows are dicts or tuples with ts, temp_c, pressure_pa, humidity_rh, fresh,
    boot, seq, received_at, source (in that order for tuples). A landed batch
    is one (boot, seq); batches are ordered by (received_at, boot, seq) — the
    collector's received time of each batch — and readings within a batch by
    time (the fold's result does not depend on that order). Two copies of a
    batch in bronze (two collectors landed it) differ in received_at: only
    the first copy's rows are kept."""
    groups = {}
    for r in rows:
        if isinstance(r, dict):
            r = (r["ts"], r["temp_c"], r["pressure_pa"], r["humidity_rh"], r["fresh"], r["boot"], r["seq"],
                 r["received_at"], r["source"])
        key = (r[5], r[6])
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"boot": r[5], "seq": r[6], "received_at": r[7], "source": r[8], "copies": {}}
        g["copies"].setdefault(r[7], []).append(r[:5])
        if r[7] < g["received_at"]:
            g["received_at"], g["source"] = r[7], r[8]
    out = sorted(groups.values(), key=lambda g: (g["received_at"], g["boot"], g["seq"]))
    for g in out:
        g["readings"] = sorted(g.pop("copies")[g["received_at"]], key=lambda x: x[0])
    return out
