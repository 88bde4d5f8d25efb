# Databricks notebook source
# pilake silver, silver_late and gold with PER-DEVICE watermarks, exactly as the
# collector computes them, over the collector's Delta bronze.
#
# The computation is pilake_fold.py (pure Python, tested in CI against the Go
# fold's vectors); this file is only the Spark edge around it:
#   - reads bronze as a stream, groups by device (applyInPandasWithState),
#   - inside each group, cuts the rows back into landed batches
#     (device, boot, seq), in landing order, and folds them one by one, so the
#     watermark advances per landed batch as in the collector, whatever the
#     trigger makes of the micro-batches,
#   - writes silver, silver_late and gold with Delta's idempotent writes
#     (txnAppId = this query's id, from its checkpoint: a new checkpoint is a
#     new id, so batch ids restarting at 0 are never skipped),
#   - closes a device's open windows after IDLE_CLOSE of silence (processing
#     time), as the collector does at shutdown, and keeps only its small state.
#
# Runs on DBR 13.3 LTS and later (Spark 3.4: applyInPandasWithState; SQL
# functions through expr(), not the Spark 3.5 Python wrappers) and on
# serverless jobs (trigger availableNow, the default). Deployed by
# databricks.yml as a job; parameters: --lake, --catalog, --schema,
# --trigger (availableNow | "processingTime=30 seconds"), --idle-close-seconds.
# Cannot run outside Databricks.

# COMMAND ----------

import argparse
import os
import sys

import pandas as pd
import pyspark.cloudpickle as cloudpickle
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupStateTimeout

try:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # a Python file task
except NameError:
    pass  # a notebook: its directory is already on sys.path (DBR 13.3+ workspace files)
import pilake_fold

# Executors get pilake_fold with the function (by value), so no wheel or
# cluster library is needed, on classic or serverless compute.
cloudpickle.register_pickle_by_value(pilake_fold)

spark = SparkSession.builder.getOrCreate()

p = argparse.ArgumentParser()
p.add_argument("--lake", default=spark.conf.get("pilake.lake", None),
               help="abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX (the collector's --azure-container/--azure-prefix)")
p.add_argument("--catalog", default="main")
p.add_argument("--schema", default="pilake")
p.add_argument("--bronze", default=None, help="bronze table (default CATALOG.SCHEMA.bronze, as unity_catalog.sql registers it)")
p.add_argument("--trigger", default="availableNow")
p.add_argument("--idle-close-seconds", type=int, default=300)
args, _ = p.parse_known_args(sys.argv[1:])  # a notebook's own arguments are ignored
if not args.lake:
    raise SystemExit("set --lake or the Spark conf pilake.lake")

LAKE = args.lake
args.bronze = args.bronze or f"{args.catalog}.{args.schema}.bronze"
# Databricks writes its own tables: never the collector's silver/silver_late/gold.
TARGET = {t: f"{args.catalog}.{args.schema}.dbx_{t}" for t in ("silver", "silver_late", "gold")}
CHECKPOINT = f"{LAKE}/_checkpoints/dbx_stages"
IDLE_CLOSE_MS = args.idle_close_seconds * 1000

# COMMAND ----------

OUTPUT_SCHEMA = """
kind string, device string, window_start long, window_end long, count long, fresh_count long,
temp_avg double, temp_min double, temp_max double, pressure_avg double, pressure_min double, pressure_max double,
humidity_avg double, humidity_min double, humidity_max double,
ts long, temp_c double, pressure_pa double, humidity_rh double, fresh boolean, boot long, seq long,
received_at long, source string, watermark long, n int, windows int
"""
COLUMNS = [c.strip().split(" ")[0] for c in OUTPUT_SCHEMA.replace("\n", " ").split(",")]
LONGS = {c.strip().split(" ")[0] for c in OUTPUT_SCHEMA.replace("\n", " ").split(",") if c.strip().endswith(" long")}
INTS = {"n", "windows"}
STATE_SCHEMA = "json string"
# the order pilake_fold.batches_in_order takes bronze's columns in
BRONZE_COLUMNS = ["ts_us", "temp_c", "pressure_pa", "humidity_rh", "fresh", "boot", "seq", "received_us", "source"]


def frame(rows):
    """One typed frame: integer columns as pandas' nullable Int64/Int32, so a
    64-bit boot id never passes through float64."""
    data = {}
    for c in COLUMNS:
        vals = [r.get(c) for r in rows]
        if c in LONGS:
            data[c] = pd.array(vals, dtype="Int64")
        elif c in INTS:
            data[c] = pd.array(vals, dtype="Int32")
        elif c == "fresh":
            data[c] = pd.array(vals, dtype="boolean")
        elif c in ("kind", "device", "source"):
            data[c] = pd.array(vals, dtype="object")
        else:
            data[c] = pd.array(vals, dtype="Float64")
    return pd.DataFrame(data, columns=COLUMNS)


def opt(v):
    """A nullable bronze value (pressure_pa, humidity_rh): pandas hands a
    null double over as NaN (or None/pd.NA); the fold takes None."""
    return None if v is None or v is pd.NA or v != v else float(v)


def fold_device(key, pdfs, state):
    (device,) = key
    st = pilake_fold.DeviceState.from_json(state.get[0]) if state.exists else pilake_fold.DeviceState()
    f = pilake_fold.Fold()
    if state.hasTimedOut:
        f.close_device(device, st)  # silent for IDLE_CLOSE: its last windows are final
    else:
        rows = []
        for pdf in pdfs:
            rows.extend(pdf[BRONZE_COLUMNS].itertuples(index=False, name=None))
        for b in pilake_fold.batches_in_order(rows):
            f.fold_batch(st, device, int(b["boot"]), int(b["seq"]), int(b["received_at"]), b["source"],
                         [(int(r[0]), float(r[1]), opt(r[2]), opt(r[3]), bool(r[4])) for r in b["readings"]])
        state.setTimeoutDuration(IDLE_CLOSE_MS)
    state.update((st.to_json(),))
    out = ([dict(r, kind="silver") for r in f.silver] + [dict(r, kind="silver_late") for r in f.silver_late]
           + [dict(r, kind="gold") for r in f.gold])
    yield frame(out)

# COMMAND ----------

_query_id = None


def query_id():
    """This query's id: stable across restarts of one checkpoint, new with a
    new checkpoint (Spark writes it to <checkpoint>/metadata at the start)."""
    global _query_id
    if _query_id is None:
        _query_id = spark.read.json(f"{CHECKPOINT}/metadata").first()["id"]
    return _query_id


def ts(col):
    return F.expr(f"timestamp_micros({col})")


def write_batch(df, batch_id):
    df.persist()
    opts = {"txnAppId": f"pilake-dbx-stages-{query_id()}", "txnVersion": str(batch_id)}
    silver = df.where("kind = 'silver'").select(
        "device", ts("window_start").alias("window_start"), ts("window_end").alias("window_end"), "count", "fresh_count",
        "temp_avg", "temp_min", "temp_max", "pressure_avg", "pressure_min", "pressure_max",
        "humidity_avg", "humidity_min", "humidity_max")
    late = df.where("kind = 'silver_late'").select(
        "device", ts("ts").alias("ts"), "temp_c", "pressure_pa", "humidity_rh", "fresh", "boot", "seq",
        ts("received_at").alias("received_at"), "source", ts("window_start").alias("window_start"),
        ts("watermark").alias("watermark"))
    gold = df.where("kind = 'gold'").select(
        "device", ts("window_start").alias("window_start"), "n", "windows", "temp_c", "pressure_pa", "humidity_rh")
    # No partitioning (a file per device per micro-batch is what partitioning
    # by device made); the tables are clustered by the DDL (unity_catalog.sql).
    silver.write.format("delta").mode("append").options(**opts).saveAsTable(TARGET["silver"])
    late.write.format("delta").mode("append").options(**opts).saveAsTable(TARGET["silver_late"])
    gold.write.format("delta").mode("append").options(**opts).saveAsTable(TARGET["gold"])
    df.unpersist()

# COMMAND ----------

bronze = (spark.readStream.table(args.bronze)
          .select("device", F.expr("unix_micros(ts)").alias("ts_us"), "temp_c", "pressure_pa", "humidity_rh", "fresh",
                  "boot", "seq", F.expr("unix_micros(received_at)").alias("received_us"), "source"))

writer = (bronze.groupBy("device")
          .applyInPandasWithState(fold_device, OUTPUT_SCHEMA, STATE_SCHEMA, "append",
                                  GroupStateTimeout.ProcessingTimeTimeout)
          .writeStream
          .foreachBatch(write_batch)
          .option("checkpointLocation", CHECKPOINT))
if args.trigger == "availableNow":
    writer = writer.trigger(availableNow=True)  # serverless jobs: run, drain, stop; the job's schedule repeats it
else:
    kind, _, value = args.trigger.partition("=")
    writer = writer.trigger(**{kind: value})  # e.g. processingTime=30 seconds on classic compute
writer.start().awaitTermination()
