"""Tests of pilake_fold (python3 -m unittest, standard library only; run by scripts/test.sh).

The input vectors and the expected rows are written by the Go fold
(collector/stages TestFoldVectors): the Python fold must make the same
silver, silver_late and gold rows, bit for bit."""

import json
import os
import random
import unittest

import pilake_fold

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "..", "collector", "stages", "testdata", "fold_vectors.json")


def load_vectors():
    with open(VECTORS) as f:
        return json.load(f)


def run_whole(v):
    """Folds the batches one by one in landing order, as the collector does."""
    f = pilake_fold.Fold(v["window_us"], v["lateness_us"], v["moving_averages"])
    states = {}
    for b in v["batches"]:
        st = states.setdefault(b["device"], pilake_fold.DeviceState())
        f.fold_batch(st, b["device"], b["boot"], b["seq"], b["received_at"], b["source"],
                     [tuple(r) for r in b["readings"]])
    if v["close_all"]:
        for d in sorted(states):
            f.close_device(d, states[d])
    return f


def run_microbatches(v, rng, duplicate=False):
    """As the Spark edge does: bronze rows cut into micro-batches at random
    batch boundaries, each device's rows of a micro-batch shuffled (Spark
    keeps no order), grouped back into landed batches, the state going
    through JSON between micro-batches. Returns rows per device."""
    f = pilake_fold.Fold(v["window_us"], v["lateness_us"], v["moving_averages"])
    states = {}
    out = {"silver": {}, "silver_late": {}, "gold": {}}
    batches = v["batches"]
    if duplicate:
        # every fifth batch is in bronze twice: another collector landed a
        # redelivered copy later, in the same micro-batch or some after
        later, dupd = {}, []
        for k, b in enumerate(batches):
            dupd.append(b)
            dupd.extend(later.pop(k, []))
            if k % 5 == 0:
                later.setdefault(min(len(batches) - 1, k + rng.randint(0, 12)), []).append(
                    dict(b, received_at=b["received_at"] + 7))
        for rest in later.values():
            dupd.extend(rest)
        batches = dupd
    i = 0
    while i < len(batches):
        j = min(len(batches), i + rng.randint(1, 9))
        by_dev = {}
        for b in batches[i:j]:
            for r in b["readings"]:
                by_dev.setdefault(b["device"], []).append(
                    (r[0], r[1], r[2], r[3], r[4], b["boot"], b["seq"], b["received_at"], b["source"]))
        for d, rows in by_dev.items():
            rng.shuffle(rows)
            st = pilake_fold.DeviceState.from_json(states[d]) if d in states else pilake_fold.DeviceState()
            for g in pilake_fold.batches_in_order(rows):
                f.fold_batch(st, d, g["boot"], g["seq"], g["received_at"], g["source"], g["readings"])
            states[d] = st.to_json()
            for kind in out:
                rows_out = getattr(f, kind)
                out[kind].setdefault(d, []).extend(rows_out)
                rows_out.clear()
        i = j
    for d in sorted(states):
        st = pilake_fold.DeviceState.from_json(states[d])
        f.close_device(d, st)
        for kind in out:
            rows_out = getattr(f, kind)
            out[kind].setdefault(d, []).extend(rows_out)
            rows_out.clear()
    return out


def by_device(rows):
    out = {}
    for r in rows:
        out.setdefault(r["device"], []).append(r)
    return out


class FoldVectorsTest(unittest.TestCase):
    def setUp(self):
        self.v = load_vectors()

    def test_same_rows_as_the_go_fold(self):
        f = run_whole(self.v)
        for kind, got in (("silver", f.silver), ("silver_late", f.silver_late), ("gold", f.gold)):
            want = self.v[kind]
            self.assertEqual(len(got), len(want), kind)
            for i, (g, w) in enumerate(zip(got, want)):
                self.assertEqual(g, w, f"{kind} row {i}")
        self.assertTrue(self.v["silver_late"], "the vectors hold late readings")

    def test_same_rows_whatever_the_micro_batches(self):
        want = {k: by_device(self.v[k]) for k in ("silver", "silver_late", "gold")}
        for seed in range(5):
            got = run_microbatches(self.v, random.Random(seed))
            for kind in want:
                got_k = {d: rows for d, rows in got[kind].items() if rows}
                self.assertEqual(got_k, want[kind], f"{kind}, micro-batch cut seed {seed}")

    def test_second_copies_of_batches_are_not_folded(self):
        want = {k: by_device(self.v[k]) for k in ("silver", "silver_late", "gold")}
        for seed in range(3):
            got = run_microbatches(self.v, random.Random(seed), duplicate=True)
            for kind in want:
                got_k = {d: rows for d, rows in got[kind].items() if rows}
                self.assertEqual(got_k, want[kind], f"{kind}, duplicated batches, seed {seed}")

    def test_boot_ids_stay_exact_integers(self):
        f = run_whole(self.v)
        boots = {r["boot"] for r in f.silver_late}
        self.assertTrue(any(b > 2**53 or b < 0 for b in boots), boots)
        for b in boots:
            self.assertIsInstance(b, int)
        src = {b["boot"] for b in self.v["batches"]}
        self.assertLessEqual(boots, src)

    def test_watermark_is_per_device(self):
        # The fast-clock device's readings are 40 s ahead: with one watermark
        # for all devices, every other device's windows would be late.
        f = run_whole(self.v)
        late_devices = {r["device"] for r in f.silver_late}
        self.assertNotIn("pi-kitchen", late_devices)
        self.assertIn("pi-kitchen", {r["device"] for r in f.silver})

    def test_state_round_trips(self):
        st = pilake_fold.DeviceState()
        f = pilake_fold.Fold()
        f.fold_batch(st, "d", -5, 1, 10, "mqtt", [(1_500_000, 21.5, 95000.0, 40.0, True)])
        st2 = pilake_fold.DeviceState.from_json(st.to_json())
        self.assertEqual(st2.to_json(), st.to_json())
        f.close_device("d", st2)
        self.assertEqual(len(f.silver), 1)
        self.assertEqual(f.silver[0]["temp_avg"], 21.5)
        self.assertEqual([g["n"] for g in f.gold], [8, 15, 60])


class EdgesTest(unittest.TestCase):
    def test_spark_edges_compile(self):
        # pyspark is not here: the edges are only compiled (syntax), never run
        for name in ("pipeline_per_device_watermark.py", "register_tables.py"):
            with open(os.path.join(HERE, name)) as f:
                compile(f.read(), name, "exec")


if __name__ == "__main__":
    unittest.main()
