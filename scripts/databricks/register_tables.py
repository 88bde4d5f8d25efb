# Databricks notebook source
"""Registers pilake's tables and the reference app's views in Unity Catalog.

Runs unity_catalog.sql with its ${catalog}, ${schema} and ${lake} filled in,
after checking them (they are spliced into DDL). The statement rendering is
pure Python (render_ddl), tested by test_register_tables.py; only main() needs
Spark. Deployed by databricks.yml as the first task of the pilake job.
"""

import argparse
import os
import re
import sys

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LAKE = re.compile(r"^(abfss|s3|gs|wasbs)://[A-Za-z0-9@._/:=+-]+$")


def render_ddl(sql, catalog, schema, lake):
    """Returns unity_catalog.sql's statements with the placeholders filled in;
    raises ValueError for a name or lake URL that is not safe to splice."""
    for what, v in (("catalog", catalog), ("schema", schema)):
        if not IDENT.match(v or ""):
            raise ValueError(f"{what} {v!r}: want letters, digits and _")
    lake = (lake or "").rstrip("/")
    if not LAKE.match(lake) or "//" in lake.split("://", 1)[1]:
        raise ValueError(f"lake {lake!r}: want abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX (or s3://, gs://)")
    text = sql.replace("${catalog}", catalog).replace("${schema}", schema).replace("${lake}", lake)
    if "${" in text:
        raise ValueError("unity_catalog.sql has a placeholder this script does not fill")
    # comments out first (they hold ';'), then one statement per ';'
    text = "\n".join(ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def main(argv):
    from pyspark.sql import SparkSession

    p = argparse.ArgumentParser()
    p.add_argument("--catalog", default="main")
    p.add_argument("--schema", default="pilake")
    p.add_argument("--lake", required=True)
    args, _ = p.parse_known_args([a for a in argv if a.startswith("--") or not a.startswith("-")])
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "unity_catalog.sql")) as f:
        stmts = render_ddl(f.read(), args.catalog, args.schema, args.lake)
    spark = SparkSession.builder.getOrCreate()
    for s in stmts:
        print(s.splitlines()[0])
        spark.sql(s)


if __name__ == "__main__":
    main(sys.argv[1:])
