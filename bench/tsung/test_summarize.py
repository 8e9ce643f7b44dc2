#!/usr/bin/env python3
"""Tests of summarize.py: python3 bench/tsung/test_summarize.py (stdlib unittest)."""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize  # noqa: E402

# Shaped like a real run's files (bench/tsung/chat.xml.in, 2 users x 3 messages).
FULLSTATS = """[{sample,{cpu,"tsung_controller@127.0.0.1"},63.0},
 {sample_counter,{recvpackets,"tsung_controller@127.0.0.1"},0}]
[{sum,size_sent,35209},
 {sum,connected,47}]
{sample,request,
        [0.136,0.175,
         1.009]}
{sample,tr_login,55.1}
{sample,tr_login,45.0}
[{sample,xmpp_msg_latency,0.5},{sample,xmpp_msg_latency,1.5},
 {sample,xmpp_msg_latency,2.5e-1},{sample,xmpp_msg_latency,4.0},
 {sample,xmpp_msg_latency,0.75}]
{sample,tr_chat_loop,600.0}
{sample,tr_chat_loop,620.0}
"""

TSUNG_LOG = """# stats: dump at 1795447014
stats: users 2 2
stats: request_noack 6 6
stats: tr_login 2 50.05 5.05 55.1 45.0 0 0
# stats: dump at 1795447024
stats: users 0 2
stats: request_noack 4 10
stats: error_no_online 0 0
stats: error_timeout 1 1
stats: xmpp_msg_latency 0 0 0 4.0 0.25 1.4 5
stats: finish_users_count 2 2
"""


class Parsing(unittest.TestCase):
    def test_fullstats(self):
        got = summarize.parse_fullstats(FULLSTATS)
        want = {
            "request": [0.136, 0.175, 1.009],
            "tr_login": [55.1, 45.0],
            "xmpp_msg_latency": [0.5, 1.5, 0.25, 4.0, 0.75],
            "tr_chat_loop": [600.0, 620.0],
        }
        self.assertEqual(got, want)

    def test_counters_use_last_dump_totals(self):
        got = summarize.parse_counters(TSUNG_LOG)
        self.assertEqual(got, {"users": 2.0, "request_noack": 10.0, "error_no_online": 0.0,
                               "error_timeout": 1.0, "finish_users_count": 2.0})

    def test_percentile_nearest_rank(self):
        cases = [
            ([], 0.5, None),
            ([5.0], 0.99, 5.0),
            ([float(i) for i in range(1, 101)], 0.50, 50.0),
            ([float(i) for i in range(1, 101)], 0.99, 99.0),
            ([1.0, 2.0, 3.0], 0.0, 1.0),
        ]
        for values, q, want in cases:
            self.assertEqual(summarize.percentile(values, q), want, (values, q))


class Cpu(unittest.TestCase):
    def test_busiest_window(self):
        # (time s, cumulative ticks at 100 Hz)
        cases = [
            ([], 10, None),
            ([(0.0, 0.0)], 10, None),
            # 2 s, 100 ticks = 1 s of CPU: 50 % over the whole (shorter) span
            ([(0.0, 0.0), (1.0, 50.0), (2.0, 100.0)], 10, 50.0),
            # idle first second, then 1 core for 2 s: the 2 s window finds 100 %
            ([(0.0, 0.0), (1.0, 0.0), (2.0, 100.0), (3.0, 200.0)], 2, 100.0),
        ]
        for samples, window, want in cases:
            self.assertEqual(summarize.busiest_window_pct(samples, window, 100.0), want, samples)


class EndToEnd(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        run = os.path.join(self.tmp.name, "log", "20261123-1516")
        os.makedirs(run)
        with open(os.path.join(run, "tsung-fullstats.log"), "w") as f:
            f.write(FULLSTATS)
        with open(os.path.join(run, "tsung.log"), "w") as f:
            f.write(TSUNG_LOG)
        self.log_dir = os.path.join(self.tmp.name, "log")

    def tearDown(self):
        self.tmp.cleanup()

    def test_rows(self):
        run = summarize.find_run_dir(self.log_dir)
        chat, login = summarize.summarize(run, "herald", 2, 10, "0.2", 3, "m", "2026-11-23")
        # sent = request_noack 10 - 2 x 2 (presence:final, close) = 6; received 5.
        self.assertEqual(chat["scenario"], "tsung-chat")
        self.assertEqual(chat["sessions"], 2)
        self.assertEqual(chat["lost"], 1)
        self.assertEqual(chat["msgs_per_sec"], round(6 / 0.61, 1))
        self.assertEqual((chat["p50_ms"], chat["p99_ms"], chat["max_ms"]), (0.75, 4.0, 4.0))
        self.assertIn("error_timeout 1", chat["note"])
        self.assertEqual(login["scenario"], "tsung-login")
        self.assertEqual((login["sessions"], login["lost"]), (2, 0))
        self.assertEqual((login["p50_ms"], login["max_ms"]), (45.0, 55.1))
        self.assertIsNone(login["msgs_per_sec"])

    def test_append_and_loadgen_rows(self):
        lg = os.path.join(self.tmp.name, "lg.json")
        with open(lg, "w") as f:
            json.dump([{"system": "herald", "scenario": "chat", "note": "step: sustained"},
                       {"system": "herald", "scenario": "chat", "note": "peak: highest"}], f)
        rows = summarize.loadgen_rows(lg)
        self.assertEqual(len(rows), 1)
        self.assertTrue(rows[0]["note"].startswith("loadgen chat at the tsung rate"))
        out = os.path.join(self.tmp.name, "out.json")
        summarize.append_rows(out, rows)
        summarize.append_rows(out, rows)
        with open(out) as f:
            self.assertEqual(len(json.load(f)), 2)

    def test_missing_run_is_an_error(self):
        with self.assertRaises(summarize.SummaryError):
            summarize.find_run_dir(os.path.join(self.tmp.name, "nothing"))
        status = summarize.main(["--log-dir", os.path.join(self.tmp.name, "nothing"),
                                 "--system", "x", "--users", "1", "--rate", "1",
                                 "--think", "1", "--iterations", "1",
                                 "--out", os.path.join(self.tmp.name, "o.json")])
        self.assertEqual(status, 1)


if __name__ == "__main__":
    unittest.main()
