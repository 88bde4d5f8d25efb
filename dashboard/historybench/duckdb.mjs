// The DuckDB side of scripts/bench.sh history: each of the dashboard's views
// as SQL over the same Parquet files (silver and gold, the live files of their
// Delta logs), the way an engine without pilake's rollups would answer it:
// bucket by time, count-weighted means, min of minima, max of maxima.
// Input: a JSON file from historybench; output: {"view": [ms, ...]} (warm runs).
import { DuckDBInstance } from '@duckdb/node-api';
import { readFileSync } from 'node:fs';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
const list = (fs) => '[' + fs.map((f) => `'${f.replaceAll("'", "''")}'`).join(',') + ']';
const v0 = input.views[0];
await con.run(`CREATE VIEW silver AS SELECT * FROM read_parquet(${list(v0.SilverFiles)})`);
await con.run(`CREATE VIEW gold AS SELECT * FROM read_parquet(${list(v0.GoldFiles)}, hive_partitioning = true)`);

function sql(v) {
  const from = v.FromMS * 1000, to = v.ToMS * 1000, b = v.BucketMS * 1000;
  const dev = v.Device ? ` AND device = '${v.Device}'` : '';
  const where = `window_start >= make_timestamp(${from}) AND window_start < make_timestamp(${to})${dev}`;
  return [
    `SELECT device, floor(epoch_us(window_start) / ${b}) AS k, avg(epoch_us(window_start)) AS t,
       sum(temp_avg * count) / sum(count), min(temp_min), max(temp_max),
       sum(humidity_avg * count) / sum(count), min(humidity_min), max(humidity_max),
       sum(pressure_avg * count) / sum(count), min(pressure_min), max(pressure_max)
     FROM silver WHERE ${where} GROUP BY ALL ORDER BY device, k`,
    `SELECT device, floor(epoch_us(window_start) / ${b}) AS k, avg(epoch_us(window_start)) AS t,
       avg(temp_c), avg(humidity_rh), avg(pressure_pa)
     FROM gold WHERE n = 8 AND ${where} GROUP BY ALL ORDER BY device, k`,
  ];
}

const out = {};
for (const v of input.views) {
  const qs = sql(v);
  const run = async () => {
    const t0 = performance.now();
    for (const q of qs) await (await con.run(q)).getRows();
    return performance.now() - t0;
  };
  await run(); // cold
  out[v.Name] = [];
  for (let i = 0; i < input.n; i++) out[v.Name].push(await run());
}
process.stdout.write(JSON.stringify(out));
