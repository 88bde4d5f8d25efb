// Reads pilake's Delta tables in LAKE without pilake's code: replays each
// table's _delta_log (the Parquet checkpoint named by _last_checkpoint and,
// for a V2 checkpoint, the sidecar files it names, read with DuckDB, then
// the JSON commits after it), checks the actions against
// the Delta protocol, and reads the live data files with DuckDB's Parquet
// reader. Prints one JSON object: per table, rows, files, column types and
// the null counts of DOUBLE columns.
//
//   node check.mjs LAKE [table ...]
import { DuckDBInstance } from '@duckdb/node-api';
import fs from 'node:fs';
import path from 'node:path';

const lake = process.argv[2];
const tables = process.argv.length > 3 ? process.argv.slice(3) : ['bronze', 'silver', 'silver_late', 'gold'];
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
const q = async (sql) => (await con.runAndReadAll(sql)).getRowObjectsJson();
const lit = (s) => "'" + s.replaceAll("'", "''") + "'";
const fail = (msg) => { throw new Error(msg); };

async function replay(dir) {
  const log = path.join(dir, '_delta_log');
  let version = -1;
  const files = new Map();
  let meta = null, protocol = null;
  const lcPath = path.join(log, '_last_checkpoint');
  if (fs.existsSync(lcPath)) {
    const lc = JSON.parse(fs.readFileSync(lcPath, 'utf8'));
    const cp = path.join(log, String(lc.version).padStart(20, '0') + '.checkpoint.parquet');
    // A V2-spec checkpoint (the v2Checkpoint feature) has a sidecar column
    // naming files in _delta_log/_sidecars that hold its add and remove actions.
    const cols = (await q(`select name from parquet_schema(${lit(cp)})`)).map((r) => r.name);
    const v2 = cols.includes('sidecar');
    const rows = await q(`select to_json(add) as add, to_json(metaData) as meta, to_json(protocol) as protocol` +
      (v2 ? `, to_json(sidecar) as sidecar, to_json(checkpointMetadata) as cpmeta` : '') + ` from read_parquet(${lit(cp)})`);
    let actions = rows.length;
    let cpMetas = 0;
    for (const r of rows) {
      if (r.cpmeta) {
        cpMetas++;
        if (JSON.parse(r.cpmeta).version !== lc.version) fail(`${cp}: checkpointMetadata names another version`);
      }
      if (!r.sidecar) continue;
      const sc = JSON.parse(r.sidecar);
      if (sc.path.includes('/')) fail(`${cp}: sidecar path ${sc.path} is not a file name`);
      const side = path.join(log, '_sidecars', sc.path);
      if (fs.statSync(side).size !== sc.sizeInBytes) fail(`${side}: size differs from the sidecar action`);
      const srows = await q(`select to_json(add) as add, to_json(remove) as remove from read_parquet(${lit(side)})`);
      actions += srows.length;
      for (const s of srows) {
        if (!s.add && !s.remove) fail(`${side}: a row that is neither add nor remove`);
        if (s.add) rows.push({ add: s.add });
      }
    }
    if (v2 && cpMetas !== 1) fail(`${cp}: ${cpMetas} checkpointMetadata actions, want 1`);
    if (actions !== lc.size) fail(`checkpoint ${cp}: ${actions} actions, _last_checkpoint says ${lc.size}`);
    for (const r of rows) {
      const add = r.add && JSON.parse(r.add);
      if (add) {
        if (files.has(add.path)) fail(`${cp}: ${add.path} added twice`);
        files.set(add.path, add);
      }
      if (r.meta) meta = JSON.parse(r.meta);
      if (r.protocol) protocol = JSON.parse(r.protocol);
    }
    version = lc.version;
  }
  for (;;) {
    const f = path.join(log, String(version + 1).padStart(20, '0') + '.json');
    if (!fs.existsSync(f)) break;
    for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const a = JSON.parse(line);
      const kinds = Object.keys(a);
      if (kinds.length !== 1) fail(`${f}: ${kinds.length} actions on one line`);
      if (a.add) {
        for (const k of ['path', 'partitionValues', 'size', 'modificationTime', 'dataChange']) if (!(k in a.add)) fail(`${f}: add without ${k}`);
        files.set(a.add.path, a.add);
      }
      if (a.remove) files.delete(a.remove.path);
      if (a.metaData) meta = a.metaData;
      if (a.protocol) protocol = a.protocol;
    }
    version++;
  }
  if (!meta || !protocol) fail(`${dir}: no metaData or protocol`);
  // Reader version 1, or 3 with only the v2Checkpoint feature (what this
  // script reads); anything else is a feature it would have to honour.
  const v2ok = protocol.minReaderVersion === 3 && (protocol.readerFeatures || []).every((f) => f === 'v2Checkpoint');
  if (protocol.minReaderVersion !== 1 && !v2ok) fail(`${dir}: reader version ${protocol.minReaderVersion} ${protocol.readerFeatures}`);
  return { version, files: [...files.values()], meta };
}

const out = {};
for (const t of tables) {
  const dir = path.join(lake, t);
  const { version, files, meta } = await replay(dir);
  const schema = JSON.parse(meta.schemaString);
  const parts = meta.partitionColumns || [];
  let rows = 0;
  const types = {};
  const nulls = {}; // DOUBLE columns' null counts, where not 0
  if (files.length > 0) {
    const list = '[' + files.map((f) => lit(path.join(dir, decodeURIComponent(f.path)))).join(',') + ']';
    const src = `read_parquet(${list}, hive_partitioning = ${parts.length > 0})`;
    rows = Number((await q(`select count(*) as n from ${src}`))[0].n);
    for (const c of await q(`describe select * from ${src}`)) types[c.column_name] = c.column_type;
    for (const [c, ty] of Object.entries(types)) {
      if (ty !== 'DOUBLE') continue;
      const id = '"' + c.replaceAll('"', '""') + '"';
      const n = Number((await q(`select count(*) - count(${id}) as n from ${src}`))[0].n);
      if (n > 0) nulls[c] = n;
    }
    let statRows = 0;
    for (const f of files) statRows += JSON.parse(f.stats).numRecords;
    if (statRows !== rows) fail(`${t}: stats say ${statRows} rows, files hold ${rows}`);
  }
  for (const f of schema.fields) {
    if (files.length > 0 && !(f.name in types)) fail(`${t}: column ${f.name} of the schema not in the files`);
  }
  out[t] = { version, files: files.length, rows, types, nulls, schema: Object.fromEntries(schema.fields.map((f) => [f.name, f.type])) };
}
console.log(JSON.stringify(out));
