"""The MathVerse judge: any OpenAI-compatible chat-completions endpoint, tested against a small HTTP server started in
the test (no network). It re-checks only the free-form answers the rules marked wrong, its verdicts stand beside the
rules' as `<protocol>+judge`, summary.json names it with its prompt, and a failing judge loses no verdict."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import evaluated_run

from ovlt.ground.config import Judge
from ovlt.stages.judge import JUDGE_PROMPT, ChatJudge, JudgeError, parse_judgement


class Endpoint:
    """A chat-completions endpoint on localhost: `reply(content) -> text` answers each request; `status` other than
    200 answers every request with that error; `delay` seconds before answering."""

    def __init__(self, reply=lambda content: "Judgement: No"):
        self.reply, self.status, self.delay, self.requests = reply, 200, 0.0, []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"path": self.path, "body": body,
                                          "authorization": self.headers.get("Authorization")})
                time.sleep(endpoint.delay)
                if endpoint.status != 200:
                    payload = {"error": {"message": "model overloaded"}}
                else:
                    content = body["messages"][0]["content"]
                    payload = {"id": "x", "object": "chat.completion", "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                   "role": "assistant", "content": endpoint.reply(content)}}]}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(endpoint.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (the time-out test)
                    pass

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def judge_for(endpoint: Endpoint, **settings) -> ChatJudge:
    return ChatJudge.from_config(Judge(base_url=endpoint.base_url, model="judge-model", **settings))


@pytest.mark.parametrize("reply, verdict", [
    ("The values agree.\nJudgement: Yes", True), ("Judgement: No", False), ("judgment: **yes**", True),
    ("Judgement: Yes ... on reflection, Judgement: No", False), ("Yes", True), ("No.", False),
    ("I cannot tell.", None), ("", None)])
def test_parse_judgement(reply, verdict):
    assert parse_judgement(reply) is verdict


def test_asks_like_a_chat_completions_client(monkeypatch):
    monkeypatch.setenv("OVLT_TEST_JUDGE_KEY", "secret")
    with Endpoint(lambda content: "Judgement: Yes" if "Model's answer: 1/2" in content else "Judgement: No") as server:
        judge = judge_for(server, api_key_env="OVLT_TEST_JUDGE_KEY", max_tokens=64)
        assert judge.ask("What is half of one?", "0.5", "1/2") == {"correct": True, "reply": "Judgement: Yes"}
        assert [a["correct"] for a in judge.ask_many([("q", "0.5", "1/3"), ("q", "0.5", "1/2")])] == [False, True]
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["authorization"] == "Bearer secret"
    assert request["body"]["model"] == "judge-model" and request["body"]["temperature"] == 0
    assert request["body"]["max_tokens"] == 64
    assert request["body"]["messages"] == [{"role": "user", "content": JUDGE_PROMPT.format(
        instruction="What is half of one?", gold="0.5", prediction="1/2")}]
    assert "secret" not in json.dumps(judge.describe()) and judge.describe()["prompt"] == JUDGE_PROMPT


def test_failures_name_the_endpoint(monkeypatch):
    with Endpoint() as server:
        server.status = 503
        with pytest.raises(JudgeError, match=rf"{server.base_url}/chat/completions answered HTTP 503.*overloaded"):
            judge_for(server).ask("q", "1", "2")
        server.status, server.delay = 200, 1.0
        with pytest.raises(JudgeError, match=rf"{server.base_url}/chat/completions did not answer within 0.2 s"):
            judge_for(server, timeout_s=0.2).ask("q", "1", "2")
        server.delay, server.reply = 0.0, lambda content: None  # content null: not a chat completion's reply
    closed = server.base_url
    with pytest.raises(JudgeError, match=rf"{closed}/chat/completions is unreachable"):
        judge_for(server).ask("q", "1", "2")
    monkeypatch.delenv("OVLT_NO_SUCH_KEY", raising=False)
    with pytest.raises(JudgeError, match="OVLT_NO_SUCH_KEY"):
        judge_for(server, api_key_env="OVLT_NO_SUCH_KEY")


# --- in the evaluation stage --------------------------------------------------------------------------------------


def mathverse_record(record_id: str, answer: str, choices: tuple[str, ...] = ()) -> dict:
    return {"id": record_id, "question": f"Question {record_id}?", "prompt": f"Question {record_id}? (query_cot)",
            "choices": list(choices), "answer": answer, "precision": -1, "image": None,
            "answer_type": "multiple_choice" if choices else "latex", "meta": {"problem_version": "Text Dominant"}}


MATHVERSE = [
    (mathverse_record("free-wrong", "12"), "<think>Twelve.</think><answer>twelve</answer>"),  # asked; judge: yes
    (mathverse_record("free-wrong-2", "7"), "<think>Six.</think><answer>six</answer>"),  # asked; judge: no
    (mathverse_record("free-right", "\\frac{1}{2}"), "<think>Half.</think><answer>\\frac{1}{2}</answer>"),  # not asked
    (mathverse_record("choice-wrong", "4", ("3", "4")), "<think>Three.</think><answer>A</answer>"),  # not asked
]


def says_twelve(content: str) -> str:
    return "Judgement: Yes" if "Model's answer: twelve" in content else "Reasoning...\nJudgement: No"


JUDGED = [{"name": "mathverse_testmini", "protocol": "strict", "judge": True}]


def judge_settings(server: Endpoint) -> dict:
    return {"base_url": server.base_url, "model": "judge-model", "concurrency": 2, "timeout_s": 5}


def test_judge_rechecks_wrong_free_form_answers(tmp_path, monkeypatch):
    from ovlt.scoring.predictions import read_predictions
    from ovlt.stages.evaluation import write_summary

    with Endpoint(says_twelve) as server:
        cfg, run, _ = evaluated_run(tmp_path, monkeypatch, JUDGED, {"mathverse_testmini": MATHVERSE},
                                    judge=judge_settings(server))
    asked = sorted(r["body"]["messages"][0]["content"].split("Model's answer: ")[1].split("\n")[0]
                   for r in server.requests)
    assert asked == ["six", "twelve"]
    # two questions asked concurrently: either may arrive first
    assert any("Question free-wrong? (query_cot)" in r["body"]["messages"][0]["content"] for r in server.requests)
    rules = {p["id"]: p["correct"] for p in read_predictions(run, "base", "mathverse_testmini", "strict")}
    judged = {p["id"]: p["correct"] for p in read_predictions(run, "base", "mathverse_testmini", "strict+judge")}
    assert rules == {"free-wrong": False, "free-wrong-2": False, "free-right": True, "choice-wrong": False}
    assert judged == {**rules, "free-wrong": True}

    summary = write_summary(cfg, run)
    results = {r["protocol"]: r for r in summary["stages"][0]["results"]}
    assert (results["strict"]["accuracy"], results["strict+judge"]["accuracy"]) == (0.25, 0.5)
    assert results["strict+judge"]["judge"] == {"asked": 2, "overturned": 1, "no_verdict": 0}
    assert results["strict+judge"]["breakdowns"]["problem_version"]["Text Dominant"]["correct"] == 2
    judge = summary["judges"]["mathverse_testmini"]
    assert judge["model"] == "judge-model" and judge["endpoint"] == f"{server.base_url}/chat/completions"
    assert judge["prompt"] == JUDGE_PROMPT
    assert {c["protocol"] for c in summary["comparisons"]} <= {"strict", "strict+judge"}


def test_a_failing_judge_keeps_the_rules_verdicts_and_resumes(tmp_path, monkeypatch):
    from ovlt.scoring.predictions import read_predictions

    with Endpoint(says_twelve) as server:
        server.status = 500
        with pytest.raises(JudgeError, match=server.base_url):
            evaluated_run(tmp_path, monkeypatch, JUDGED, {"mathverse_testmini": MATHVERSE},
                          judge=judge_settings(server))
        from ovlt.ground.artifacts import Run

        run = Run(tmp_path / "run")
        rules = {p["id"]: p["correct"] for p in read_predictions(run, "base", "mathverse_testmini", "strict")}
        assert rules["free-right"] is True and sum(rules.values()) == 1  # on disk before the judge was asked
        failed = len(server.requests)
        server.status = 200
        _, run, backend = evaluated_run(tmp_path, monkeypatch, JUDGED, {"mathverse_testmini": MATHVERSE},
                                        judge=judge_settings(server))
    assert backend.prompts == [], "the responses were kept: the rerun generates nothing"
    assert len(server.requests) == failed + 2
    assert sum(p["correct"] for p in read_predictions(run, "base", "mathverse_testmini", "strict+judge")) == 2
