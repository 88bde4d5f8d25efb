# Databricks notebook source
# pilake silver, silver_late and gold with PER-DEVICE watermarks, as the
# collector computes them (collector/stages), over the collector's Delta bronze.
#
#   window:     tumbling, WINDOW_US (1 s): [floor(ts/W)*W, +W)
#   watermark:  per device: max event time seen from that device - LATENESS_US (10 s),
#               advanced after each micro-batch (the collector: after each landed batch)
#   final:      a window is final when its end <= the device's watermark; its
#               silver row is appended then; readings for final windows go to silver_late
#   sums:       in the sensor's fixed-point units (0.01 °C, Pa/256, 1/1024 %RH),
#               so aggregates do not depend on arrival order
#   gold:       per device, AVG over the last N final windows, N in MOVING_AVERAGES
#
# Requires DBR 13.3+ (applyInPandasWithState). Cannot run outside Databricks.

# COMMAND ----------

import json

import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql import Window
from pyspark.sql.streaming.state import GroupStateTimeout

LAKE = spark.conf.get("pilake.lake")  # abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX
WINDOW_US = 1_000_000          # collector --window 1s
LATENESS_US = 10_000_000       # collector --allowed-lateness 10s
MOVING_AVERAGES = [8, 15, 60]  # collector --moving-averages 8,15,60
OUT = {t: f"{LAKE}/dbx_{t}" for t in ("silver", "silver_late", "gold")}
CHECKPOINT = f"{LAKE}/_checkpoints/dbx_stages"

# COMMAND ----------

OUTPUT_SCHEMA = """
kind string, device string, window_start long, count long, fresh_count long,
t_sum long, t_min long, t_max long, p_sum long, p_min long, p_max long, h_sum long, h_min long, h_max long,
ts long, temp_c double, pressure_pa double, humidity_rh double, fresh boolean, boot long, seq long,
received_at long, source string, watermark long
"""
STATE_SCHEMA = "json string"


def fold(key, pdfs, state):
    """Folds one device's new readings; emits final windows and late readings."""
    (device,) = key
    st = json.loads(state.get[0]) if state.exists else {"max_event": None, "closed_before": None, "open": {}}
    out = []
    new_max = st["max_event"]
    for pdf in pdfs:
        for r in pdf.itertuples(index=False):
            ws = (r.ts_us // WINDOW_US) * WINDOW_US
            new_max = r.ts_us if new_max is None else max(new_max, r.ts_us)
            if st["closed_before"] is not None and ws < st["closed_before"]:
                wm = None if st["max_event"] is None else st["max_event"] - LATENESS_US
                out.append(dict(kind="late", device=device, window_start=ws, ts=r.ts_us, temp_c=r.temp_c,
                                pressure_pa=r.pressure_pa, humidity_rh=r.humidity_rh, fresh=r.fresh, boot=r.boot,
                                seq=r.seq, received_at=r.received_us, source=r.source, watermark=wm))
                continue
            t, p, h = round(r.temp_c * 100), round(r.pressure_pa * 256), round(r.humidity_rh * 1024)
            w = st["open"].get(str(ws))
            if w is None:
                w = st["open"][str(ws)] = dict(n=0, f=0, ts=0, tn=t, tx=t, ps=0, pn=p, px=p, hs=0, hn=h, hx=h)
            w["n"] += 1
            w["f"] += int(bool(r.fresh))
            w["ts"] += t; w["tn"] = min(w["tn"], t); w["tx"] = max(w["tx"], t)
            w["ps"] += p; w["pn"] = min(w["pn"], p); w["px"] = max(w["px"], p)
            w["hs"] += h; w["hn"] = min(w["hn"], h); w["hx"] = max(w["hx"], h)
    st["max_event"] = new_max
    if new_max is not None:
        cb = ((new_max - LATENESS_US) // WINDOW_US) * WINDOW_US
        if st["closed_before"] is None or cb > st["closed_before"]:
            for ws in sorted(int(k) for k in st["open"]):
                if ws >= cb:
                    break
                w = st["open"].pop(str(ws))
                out.append(dict(kind="silver", device=device, window_start=ws, count=w["n"], fresh_count=w["f"],
                                t_sum=w["ts"], t_min=w["tn"], t_max=w["tx"], p_sum=w["ps"], p_min=w["pn"],
                                p_max=w["px"], h_sum=w["hs"], h_min=w["hn"], h_max=w["hx"]))
            st["closed_before"] = cb
    state.update((json.dumps(st),))
    cols = [c.strip().split(" ")[0] for c in OUTPUT_SCHEMA.replace("\n", " ").split(",")]
    yield pd.DataFrame(out, columns=cols)

# COMMAND ----------

def write_batch(df, batch_id):
    df.persist()
    silver = (df.where("kind = 'silver'").select(
        "device",
        F.timestamp_micros("window_start").alias("window_start"),
        F.timestamp_micros(F.col("window_start") + WINDOW_US).alias("window_end"),
        "count", "fresh_count",
        (F.col("t_sum") / F.col("count") / 100).alias("temp_avg"), (F.col("t_min") / 100).alias("temp_min"), (F.col("t_max") / 100).alias("temp_max"),
        (F.col("p_sum") / F.col("count") / 256).alias("pressure_avg"), (F.col("p_min") / 256).alias("pressure_min"), (F.col("p_max") / 256).alias("pressure_max"),
        (F.col("h_sum") / F.col("count") / 1024).alias("humidity_avg"), (F.col("h_min") / 1024).alias("humidity_min"), (F.col("h_max") / 1024).alias("humidity_max")))
    late = df.where("kind = 'late'").select(
        "device", F.timestamp_micros("ts").alias("ts"), "temp_c", "pressure_pa", "humidity_rh", "fresh", "boot", "seq",
        F.timestamp_micros("received_at").alias("received_at"), "source",
        F.timestamp_micros("window_start").alias("window_start"), F.timestamp_micros("watermark").alias("watermark"))
    # Idempotent per micro-batch (txnAppId/txnVersion: Delta's txn action, as the collector's epochs).
    opts = {"txnAppId": "pilake-dbx-stages", "txnVersion": batch_id}
    silver.write.format("delta").mode("append").options(**opts).save(OUT["silver"])
    late.write.format("delta").mode("append").options(**opts).save(OUT["silver_late"])
    # Gold: the new final windows plus each device's previous max(N)-1 windows.
    maxn = max(MOVING_AVERAGES)
    first = silver.groupBy("device").agg(F.min("window_start").alias("first"))
    prev = (spark.read.format("delta").load(OUT["silver"]).join(first, "device")
            .where("window_start < first")
            .withColumn("rk", F.row_number().over(Window.partitionBy("device").orderBy(F.desc("window_start"))))
            .where(F.col("rk") < maxn).drop("rk", "first"))
    hist = prev.withColumn("new", F.lit(False)).unionByName(silver.withColumn("new", F.lit(True)))
    golds = []
    for n in MOVING_AVERAGES:
        w = Window.partitionBy("device").orderBy("window_start").rowsBetween(-(n - 1), 0)
        golds.append(hist.select(
            "device", "window_start", F.lit(n).cast("int").alias("n"), F.count("*").over(w).cast("int").alias("windows"),
            F.avg("temp_avg").over(w).alias("temp_c"), F.avg("pressure_avg").over(w).alias("pressure_pa"),
            F.avg("humidity_avg").over(w).alias("humidity_rh"), "new"))
    gold = golds[0].unionByName(golds[1]).unionByName(golds[2]).where("new").drop("new")
    gold.write.format("delta").mode("append").partitionBy("device").options(**opts).save(OUT["gold"])
    df.unpersist()

# COMMAND ----------

bronze = (spark.readStream.format("delta").load(f"{LAKE}/bronze")
          .select("device", F.unix_micros("ts").alias("ts_us"), "temp_c", "pressure_pa", "humidity_rh", "fresh",
                  "boot", "seq", F.unix_micros("received_at").alias("received_us"), "source"))

(bronze.groupBy("device")
    .applyInPandasWithState(fold, OUTPUT_SCHEMA, STATE_SCHEMA, "append", GroupStateTimeout.NoTimeout)
    .writeStream
    .foreachBatch(write_batch)
    .option("checkpointLocation", CHECKPOINT)
    .trigger(processingTime="1 second")
    .start())
