"""Tests of register_tables.render_ddl (python3 -m unittest, standard library only)."""

import os
import re
import unittest

import register_tables

HERE = os.path.dirname(os.path.abspath(__file__))
LAKE = "abfss://lake@acct.dfs.core.windows.net/pilake"


def ddl():
    with open(os.path.join(HERE, "unity_catalog.sql")) as f:
        return f.read()


def view_columns(stmt):
    body = stmt.split("AS SELECT", 1)[1].split("FROM", 1)[0]
    return re.findall(r"\bAS (\w+)\s*(?:,|$)", body, re.M)


class RegisterTablesTest(unittest.TestCase):
    def test_statements(self):
        stmts = register_tables.render_ddl(ddl(), "main", "pilake", LAKE + "/")
        self.assertEqual(len(stmts), 7)
        self.assertTrue(all(s.startswith("CREATE ") for s in stmts), stmts)
        for t in ("bronze", "silver", "silver_late", "gold"):
            self.assertTrue(any(f"main.pilake.{t}\nUSING DELTA LOCATION '{LAKE}/{t}'" in s for s in stmts), t)
        self.assertFalse(any("${" in s for s in stmts))

    def test_reference_app_shapes(self):
        stmts = register_tables.render_ddl(ddl(), "main", "pilake", LAKE)
        silver = next(s for s in stmts if "VIEW main.pilake.silver_sensors" in s)
        gold = next(s for s in stmts if "VIEW main.pilake.gold_sensors" in s)
        # plotly/dash-dbx-sql-realtime: utils/BuildBackEndIoTDatabase.sql and utils/figures.py
        self.assertEqual(view_columns(silver), ["DeviceName", "EventWindow", "TempReading", "HumidityReading",
                                                "EventTimestamp", "EventDate", "ReceivedTimestamp", "InputFileName"])
        self.assertEqual(view_columns(gold)[:3], ["TimestampSecond", "Temperature_Moving_Average", "Humidity_Moving_Average"])
        self.assertIn("WHERE n = 8", gold)

    def test_refuses_what_cannot_be_spliced(self):
        for catalog, schema, lake in (("main; DROP", "pilake", LAKE), ("main", "a.b", LAKE), ("main", "", LAKE),
                                      ("main", "pilake", "abfss://x/y' OR 1=1"), ("main", "pilake", "/dbfs/lake"),
                                      ("main", "pilake", "abfss://lake@acct//x")):
            with self.assertRaises(ValueError, msg=(catalog, schema, lake)):
                register_tables.render_ddl(ddl(), catalog, schema, lake)


if __name__ == "__main__":
    unittest.main()
