"""Write the tutorial notebooks in notebooks/ from the sources below, then execute them (outputs committed).

    .venv/bin/python tools/make_notebooks.py [--no-execute] [NAME ...]

Cells are (kind, source, tags). Tags: ``nbval-ignore-output`` for cells whose output truly varies
(timings in tables, environment-dependent services), ``raises-exception`` for cells that show an error.
Everything else is compared strictly by nbval (with notebooks/nbval_sanitize.cfg for timings, dates,
ports and ids).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"
LAX = ["nbval-ignore-output"]
RAISES = ["raises-exception"]


def md(text: str) -> tuple[str, str, list[str]]:
    return ("markdown", text.strip("\n"), [])


def code(text: str, tags: list[str] | None = None) -> tuple[str, str, list[str]]:
    return ("code", text.strip("\n"), tags or [])


QUICKSTART = [
    md("""
# Quickstart: ask a model from your notebook

coffee_nb adds a `%%llm` cell magic to Jupyter. The cell body is your prompt; the answer **streams into
the cell**, and a one-line footer says which model answered, how many tokens it used, what it cost, how
long it took and how much budget is left.

You need no API key to follow along: without keys, coffee_nb answers with its built-in **sandbox**, an
offline stand-in for OpenAI that runs on your machine (its prices are pretend *sandbox prices*, so you
can watch costs and budgets work for free). With a key set (`OPENAI_API_KEY`), the same cells use the
real model.
"""),
    code("%load_ext coffee_nb"),
    md("""
## Ask

Run the cell below. The first answer also tells you that the sandbox is in use.
"""),
    code("""
%%llm
What does p95 latency mean?
"""),
    md("""
## Use your variables

`{name}` is replaced by the variable's value (also `{name.attr}`, `{name[key]}`, `{In[3]}`, `{Out[3]}`).
Braces that are not a variable — code, JSON — stay exactly as written.
"""),
    code('topic = "cold brew"'),
    code("""
%%llm --no-stream
Explain {topic} in one sentence. Keep {"format": "json"} as it is.
"""),
    md("""
## Choose models and formats

Name models on the first line, in order: the first is tried first, the others are fallbacks.
`-f/--format` picks how the answer is shown: `markdown` (default), `text`, `code`, `json`, `html`.
The `sandbox/echo` model repeats your prompt, which makes formats easy to see.
"""),
    code("""
%%llm sandbox/echo -f json
```json
{"answer": 42, "unit": "cups"}
```
"""),
    code("""
%%llm sandbox/echo -f code
```python
def brew(grams, ml):
    return {"ratio": ml / grams}
```
"""),
    md("""
## Keep the answer

`-o NAME` stores the answer object in a variable (it is also in `_`). It holds the text, the model that
answered, the cost (a `Decimal`, in USD), the tokens and the full trace of attempts.
"""),
    code("""
%%llm -o reply --no-stream
Name three coffee bean varieties.
"""),
    code("reply.model, reply.cost, reply.tokens"),
    code('[(a["model"], a["role"], a["outcome"]) for a in reply.attempts]'),
    md("""
## Re-running is free

An identical request (same models, prompt and options) is answered from a local cache at $0, so
re-running a notebook never bills you twice. Add `--no-cache` to force a new call.
"""),
    code("""
%%llm --no-stream
Name three coffee bean varieties.
"""),
    md("""
## Know the cost before you spend

`--dry-run` makes no call: for each model it shows the estimated prompt tokens, the worst case (every
allowed output token at the output price) and what that would leave of your budget.
"""),
    code("""
%%llm sandbox/fast sandbox/smart --dry-run -m 200
Summarise the history of espresso.
"""),
    md("""
## Where the money went

`%llm_budget` shows each budget period (the default is a hard **$5 per day**; change it with
`%llm_config --daily 10`). `%llm_costs` returns a pandas DataFrame per model. `%llm_dashboard` shows
a live dashboard that updates while cells run; the saved notebook keeps a picture of its last state.
"""),
    code("%llm_budget"),
    code("%llm_costs", LAX),
    code("%llm_dashboard"),
]

FALLBACKS = [
    md("""
# Fallbacks and faults

Real providers rate-limit, time out and go down. coffee_nb's `AutoPicker` tries your primary model,
**retries** transient errors with backoff, **falls back** to the next model, **cools down** a model that
keeps failing, and bounds everything by **one deadline** per call.

The sandbox can fail on purpose, so you can watch each of these happen. `sandbox.inject(model, [...])`
scripts the next responses of a model.
"""),
    code("""
from coffee_nb import AutoPicker, Policy, sandbox, AllModelsFailedError, DeadlineExceededError

def trace(message):
    \"\"\"The attempts of one call: model, why it was tried, how it ended.\"\"\"
    return [(a["model"], a["role"], a["outcome"], a["error_class"]) for a in message.response_metadata["coffee_nb"]["attempts"]]

llm = AutoPicker("sandbox/fast", ["sandbox/smart"], policy=Policy(backoff_base=0.05, backoff_cap=0.2))
"""),
    md("""
## A rate limit, then success: retry

A 429 with `Retry-After` is retried on the same model after waiting at least that long.
"""),
    code("""
sandbox.inject("sandbox/fast", ["rate_limit:0.2"])
trace(llm.invoke("Hello"))
"""),
    md("""
## An outage: fall back

Three 503s in a row use up the primary's retries, and the fallback answers.
"""),
    code("""
sandbox.inject("sandbox/fast", ["overloaded"] * 3)
answer = llm.invoke("Hello again")
trace(answer), answer.response_metadata["coffee_nb"]["fallback_reason"]
"""),
    md("""
## Cooldown

After repeated failures the primary is **skipped** for a while (a circuit breaker), so the next calls
don't waste time on it. After the cooldown one call probes it again.
"""),
    code("""
trace(llm.invoke("Is the primary cooling down?")), llm.candidates[0].breaker.state
"""),
    md("""
## Caller errors are raised, not retried

A bad request (HTTP 400) is your call's problem, not the provider's: it is raised at once and never
cools a model down. Context overflow is the exception: a model with a bigger window may succeed.
"""),
    code("""
sandbox.inject("sandbox/echo", ["context_overflow"])
llm2 = AutoPicker("sandbox/echo", ["sandbox/smart"])
trace(llm2.invoke("A very long prompt, pretend"))
"""),
    md("""
## One deadline for everything

`Policy(deadline=...)` bounds all retries, waits and fallbacks together. Here both models hang.
"""),
    code("""
sandbox.inject("sandbox/fast", ["hang:5"])
sandbox.inject("sandbox/smart", ["hang:5"])
quick = AutoPicker("sandbox/fast", ["sandbox/smart"], policy=Policy(deadline=1.0, max_retries=0))
try:
    quick.invoke("Anyone there?")
except DeadlineExceededError as exc:
    print(type(exc).__name__, "after", len(exc.attempts), "attempts:", [(a.model, a.error_class) for a in exc.attempts])
"""),
    md("""
## When every model fails

`AllModelsFailedError` lists every attempt: model, error class, message and latency.
"""),
    code("""
sandbox.clear_faults()
sandbox.inject("sandbox/fast", ["auth"])
sandbox.inject("sandbox/echo", ["auth"])
try:
    AutoPicker("sandbox/fast", ["sandbox/echo"]).invoke("Hello?")
except AllModelsFailedError as exc:
    print([(a.model, a.error_class) for a in exc.attempts])
"""),
    md("""
In a `%%llm` cell the same failure shows a readable box (what happened, each attempt, what to do) and
stops "Run all" without a traceback wall:
"""),
    code("%load_ext coffee_nb"),
    code("""
import coffee_nb
sandbox.inject("sandbox/fast", ["auth"])
sandbox.inject("sandbox/echo", ["auth"])
"""),
    code("""
%%llm sandbox/fast sandbox/echo --no-cache
This will not work.
""", RAISES),
]

BUDGETS = [
    md("""
# Budgets: never a surprise bill

A `Budget` caps spend per **hour, day, ISO week, month** or in **total**, calendar-aligned in your
timezone. Limits are **hard** (block) or **soft** (warn). Before each attempt coffee_nb *reserves* the
worst case; after it, it *commits* what the call really cost (or releases the reservation if it failed).
"""),
    code("""
import tempfile, warnings
from pathlib import Path
from coffee_nb import AutoPicker, Budget, Limit, BudgetExceededError, sandbox

workdir = Path(tempfile.mkdtemp())   # this tutorial's own ledger file
ledger = workdir / "ledger.sqlite3"
budget = Budget(daily="0.002", total=Limit(1, hard=False), warn_at=0.5, ledger=ledger, timezone="UTC")
budget
"""),
    md("""
## Budget-aware fallback

`sandbox/smart` costs 50× more than `sandbox/fast`. When the worst case of a smart call no longer fits the
daily limit, AutoPicker **skips** it and the cheaper fallback answers, until nothing fits.
"""),
    code("""
llm = AutoPicker("sandbox/smart", ["sandbox/fast"], budget=budget, max_tokens=50)
answered_by = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        for i in range(40):
            answered_by.append(llm.invoke(f"question {i}").response_metadata["coffee_nb"]["model"])
    except BudgetExceededError as exc:
        stopped = str(exc)
print(answered_by[:3], "...", answered_by[-2:], f"({len(answered_by)} answers)")
print("stopped:", stopped.splitlines()[0][:60], "...")
print("warnings:", [str(w.message)[:60] for w in caught])
"""),
    md("""
The warning fired **once** when spend crossed 50% of the daily limit. Committed spend never exceeds a
hard limit, even with many threads or kernels racing for it.
"""),
    code("budget.status()['daily']['spent'] <= budget.status()['daily']['budget']"),
    md("""
## Dry run

`%%llm --dry-run` shows the same arithmetic without calling anything (see the quickstart). From Python:
"""),
    code("""
import coffee_nb
coffee_nb.configure(budget=budget)
[(r["model"], r["input_tokens"], r["worst_case_cost"]) for r in coffee_nb.get_session().dry_run("One more?", max_tokens=50)]
"""),
    md("""
## Persistence across kernels

The default ledger is a SQLite file, so today's spend survives a kernel restart, and several kernels
on one machine share it safely. Here a separate Python process — standing in for another kernel —
records $0.0005 into the same ledger:
"""),
    code("""
import subprocess, sys
before = budget.spent("daily")
subprocess.run([sys.executable, "-c",
    f"from coffee_nb import Budget; Budget(daily=1, ledger={str(ledger)!r}).record('0.0005', model='other-kernel')"],
    check=True)
budget.spent("daily") - before
"""),
    md("""
## A team budget on Redis

Point several kernels — on several machines — at one Redis, with a shared name:
`Budget(daily=20, ledger="redis://host:6379/0", name="team-ml")`. Reserve and commit are atomic Lua
scripts. To try it locally, install Redis (`apt-get install redis-server`, or `brew install redis`);
this cell starts one on a free port if it is installed and skips otherwise.
"""),
    code("""
from coffee_nb.testing import redis_server   # starts a throwaway redis-server on 127.0.0.1

try:
    with redis_server() as url:
        alice = Budget(daily=1, ledger=url, name="team")
        bob = Budget(daily=1, ledger=url, name="team")   # another kernel, same team budget
        alice.record("0.25"); bob.record("0.5")
        print("team spend seen by alice:", alice.spent("daily"))
except FileNotFoundError as exc:
    print("skipped:", exc)
""", LAX),
]

METRICS = [
    md("""
# Metrics: where the seconds and the money went

Every attempt produces one `CallRecord`. Metrics *sinks* receive them: `LocalMetrics` keeps them in
memory (DataFrames, percentiles), `PrometheusMetrics` exposes them for scraping.
"""),
    code("""
from coffee_nb import AutoPicker, LocalMetrics, PrometheusMetrics, Policy, sandbox

local = LocalMetrics()
prom = PrometheusMetrics()
llm = AutoPicker("sandbox/flaky", ["sandbox/fast"], metrics=[local, prom],
                 policy=Policy(backoff_base=0.01, backoff_cap=0.02))
answers = [llm.invoke(f"question {i}") for i in range(30)]
len(answers)
"""),
    md("""
## The numbers

`get_metrics()` returns plain Python values. Costs are exact `Decimal`s (sandbox prices here).
`sandbox/flaky` fails about one request in three, so there are retries and errors to look at.
"""),
    code("""
m = local.get_metrics()
{"requests": m["requests"]["total"], "answered": m["requests"]["successful"], "retries": m["requests"]["retry"],
 "errors by class": m["errors"]["by_class"], "cost": m["costs"]["total"]}
"""),
    md("""
## One row per attempt

`to_dataframe()` gives proper dtypes: timestamps in UTC, categories for model/outcome/error class,
`cost_usd` as float (NaN for unpriced attempts).
"""),
    code("df = local.to_dataframe()\ndf.dtypes"),
    code("df.groupby('model', observed=True)['outcome'].value_counts().unstack(fill_value=0)"),
    code("local.summary()[['calls', 'errors', 'output_tokens', 'cost_usd', 'p50_latency_s', 'p95_latency_s']]", LAX),
    md("""
## Latency histogram

A live view, redrawn as calls land; p50 and p95 are marked. `hist.model.value = "sandbox/fast"` shows one
model, `hist.view.value = "time to first token"` the first tokens of streamed answers.
"""),
    code("""
from coffee_nb.notebook.widgets import LatencyHistogram
LatencyHistogram(local)
"""),
    md("""
## Prometheus

Each `PrometheusMetrics` has its own registry (re-running this cell is safe). `serve()` exposes
`/metrics` on 127.0.0.1; here we scrape it ourselves.
"""),
    code("""
import urllib.request
port = prom.serve(0)
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
print("\\n".join(line for line in text.splitlines() if line.startswith(("coffee_nb_requests_total", "coffee_nb_errors_total"))))
prom.stop()
"""),
    md("""
## OpenTelemetry traces

`OpenTelemetryMetrics` sends every call to your observability stack as OpenTelemetry spans and metrics,
named by the GenAI semantic conventions: one `chat {model}` span per call, a child span per attempt
(retries and fallbacks as they happened), tokens, cost and budget left as attributes. It joins your
tracing when you have set up OpenTelemetry (Langfuse, Phoenix, Honeycomb...), else it exports over
OTLP/HTTP to what `OTEL_EXPORTER_OTLP_ENDPOINT` says. `%llm_config --metrics otel` turns it on for `%%llm`.
Here the spans go to an in-memory exporter, so we can look at them:
"""),
    code("""
import pandas as pd
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from coffee_nb import OpenTelemetryMetrics

exported = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exported))
sandbox.inject("sandbox/flaky", ["server_error", "server_error", "server_error"])  # retried, then the fallback
traced = AutoPicker("sandbox/flaky", ["sandbox/fast"], metrics=[OpenTelemetryMetrics(tracer_provider=provider)],
                    policy=Policy(max_retries=2, backoff_base=0.01, backoff_cap=0.02))
traced.invoke("Where did the seconds go?")
pd.DataFrame([{"span": s.name, "child of the call": s.parent is not None,
               "outcome": s.attributes.get("coffee_nb.outcome", "(the call)"),
               "error.type": s.attributes.get("error.type"),
               "input tokens": s.attributes["gen_ai.usage.input_tokens"]}
              for s in sorted(exported.get_finished_spans(), key=lambda s: s.start_time)])
"""),
]

PYTHON_API = [
    md("""
# The Python API: AutoPicker is a LangChain chat model

Everything `%%llm` does is available from Python. `AutoPicker` works wherever a LangChain chat model
works: `invoke`, `batch`, `stream`, async, LCEL chains, callbacks, tools and structured output.
"""),
    code("""
from coffee_nb import AutoPicker
llm = AutoPicker("sandbox/fast", ["sandbox/smart"])
llm.invoke("Hello").content
"""),
    md("## In an LCEL chain"),
    code("""
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.output_parsers import StrOutputParser

chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "Tell me about {thing}")]) | llm | StrOutputParser()
chain.invoke({"thing": "crema"})
"""),
    md("## Batch, async and streaming"),
    code("""
[m.content[:40] for m in llm.batch(["one", "two", "three"])]
"""),
    code("""
answers = await llm.abatch(["four", "five"])
[a.response_metadata["coffee_nb"]["model"] for a in answers]
"""),
    code("""
for chunk in AutoPicker("sandbox/echo").stream("streamed word by word"):
    if chunk.content:
        print(repr(chunk.content), end=" ")
"""),
    md("## Callbacks see every model that was tried"),
    code("""
from langchain_core.callbacks import BaseCallbackHandler
from coffee_nb import sandbox

class Starts(BaseCallbackHandler):
    def __init__(self): self.models = []
    def on_chat_model_start(self, serialized, messages, **kw):
        self.models.append(kw["invocation_params"].get("model_name") or kw["invocation_params"].get("_type"))

sandbox.inject("sandbox/fast", ["auth"])
handler = Starts()
llm.invoke("who answers?", config={"callbacks": [handler]})
handler.models
"""),
    md("## Structured output, forwarded to each candidate"),
    code("""
from pydantic import BaseModel

class Drink(BaseModel):
    name: str
    size_ml: int

AutoPicker("sandbox/fast").with_structured_output(Drink).invoke("A 250 ml 'flat white', please")
"""),
]

REAL = [
    md("""
# Real providers

Everything in these tutorials works with real models: set a key and name the model.

| provider | key variable | example spec |
|---|---|---|
| OpenAI | `OPENAI_API_KEY` | `openai/gpt-4o-mini` |
| Anthropic | `ANTHROPIC_API_KEY` (`pip install 'coffee_nb[anthropic]'`) | `anthropic/claude-3-5-haiku-latest` |
| Ollama (local) | none; `OLLAMA_HOST` | `ollama/llama3.2` |

Prices come from genai-prices' bundled data; a model without a known price is shown as *unpriced*.
Keep the sandbox as a last fallback to survive an outage.

**This notebook replays a cassette** (`06_real_providers.llm-cassette.jsonl`, next to it) in *strict*
mode: every call is answered from the file, nothing is sent, no key is needed, and it costs $0. That is
how it runs in CI. The cassette was recorded from the **sandbox posing as OpenAI and Anthropic**
(`tools/record_real_providers.py`), so the answers are sandbox text; with your keys set, run
`%llm_cassette record` instead of `strict` to record real answers (and commit the file).
"""),
    code("""
%load_ext coffee_nb
%llm_cassette strict 06_real_providers.llm-cassette.jsonl
"""),
    code("""
from coffee_nb import AutoPicker, CallSummary
llm = AutoPicker("openai/gpt-4o-mini", ["anthropic/claude-3-5-haiku-latest", "sandbox/fast"], max_tokens=50)
msg = llm.invoke("Say hello in French.")
summary = CallSummary.of(msg)  # the plain metadata's typed view: Decimal money
msg.content, summary.model, summary.replayed, summary.cost
"""),
    code("""
%%llm openai/gpt-4o-mini anthropic/claude-3-5-haiku-latest -m 50
Say hello in Spanish.
"""),
    code("""
%llm_cassette off
"""),
]

MAP_ROWS = [
    md("""
# Prompt over a DataFrame: `%%llm_map` and `map_rows`

The job that usually comes after single prompts: run **one prompt template over every row** of a
DataFrame — classify tickets, extract fields, summarise a column. coffee_nb does it with a progress
bar, per-row cost, a budget that stops the job cleanly, and **resume**: an interrupted or stopped job
re-run with the same arguments continues where it stopped, and the rows already answered cost $0.

Every row is an ordinary coffee_nb call (retries, fallbacks, budget, records), so everything from the
earlier tutorials applies. No API key needed: the sandbox answers.
"""),
    code("""
%load_ext coffee_nb
import coffee_nb, pandas as pd

tickets = pd.DataFrame({
    "text": [
        "I was charged twice for my order",
        "The parcel never arrived",
        "The mug handle broke on day one",
        "Can I change my delivery address?",
        "Refund still not on my card",
        "Great coffee, thanks!",
    ],
}, index=[f"T-{i}" for i in range(101, 107)])
tickets
"""),
    md("""
## Know the cost first

The cell body is the template: `{text}` is filled from each row's `text` column (other `{names}` come
from your variables, as in `%%llm`). `--dry-run` calls nothing: it shows how many rows the cache already
answers, the **expected** cost and the **worst case** (every allowed output token), and the budget left.
"""),
    code("""
%%llm_map tickets --dry-run
Classify this support ticket as billing, delivery, product or other. One word.

Ticket: {text}
"""),
    md("""
## Run it

`-o NAME` stores the result: your frame with the answer and its bookkeeping appended — the model that
answered, `fallback_from`, tokens, `cost` (a `Decimal`), `latency_s`, `cached` and `error`. The index and
row order are kept. A live bar shows rows done, failed and cached, spend, the projected total, ETA and
concurrency (which halves on rate limits and grows back).
"""),
    code("""
%%llm_map tickets -o labelled
Classify this support ticket as billing, delivery, product or other. One word.

Ticket: {text}
"""),
    code('labelled[["answer", "model", "cost", "cached", "error"]]'),
    md("""
## Re-running is free

Each row's answer is in the response cache, so running the same cell again — after a kernel interrupt,
a budget stop, or just "Run all" — only calls the rows that have no answer yet. Here that is none:
"""),
    code("""
%%llm_map tickets -o labelled
Classify this support ticket as billing, delivery, product or other. One word.

Ticket: {text}
"""),
    md("""
## Typed columns

`--schema` (or `schema=` in Python) takes a pydantic model, a JSON schema, a dict like
`{"urgent": bool}`, or inline text like `'category:str, urgent:bool'`. Each field becomes a typed column.
Models that support structured output get it natively; others are asked for JSON, which is validated:
a row whose answer doesn't fit gets an `error`, never a crash. (The sandbox fills fields with simple
placeholder values; a real model reads the ticket.)
"""),
    code("""
from typing import Literal
from pydantic import BaseModel

class Triage(BaseModel):
    category: Literal["billing", "delivery", "product", "other"]
    urgent: bool
"""),
    code("""
%%llm_map tickets --schema Triage -o triaged
Triage this support ticket.

Ticket: {text}
"""),
    code('triaged[["text", "category", "urgent", "error"]]'),
    code('triaged.dtypes[["category", "urgent"]]'),
    md("""
## A budget stop, then resume

With a hard budget the job stops when the next row can't be covered, keeps every finished row, and says
how many rows remain. Raise the limit (or wait for the period to reset) and run the same call again.
From Python it is `coffee_nb.map_rows(df, template, ...)`:
"""),
    code("""
from coffee_nb import Budget

questions = pd.DataFrame({"q": [f"Give me fact number {i} about espresso." for i in range(40)]})
small = Budget(total="0.0004", ledger="memory", warn_at=1.0)
part = coffee_nb.map_rows(questions, "{q}", models=["sandbox/fast"], budget=small, max_tokens=60, concurrency=1)
print(part.attrs["coffee_nb"]["status"], "-", int(part["error"].isna().sum()), "answered,", part["error"].value_counts().to_dict())
"""),
    code("""
more = Budget(total=1, ledger="memory")
whole = coffee_nb.map_rows(questions, "{q}", models=["sandbox/fast"], budget=more, max_tokens=60, concurrency=1)
print(int(whole["cached"].sum()), "from the cache at", whole.loc[whole["cached"], "cost"].sum(), "USD;",
      int((~whole["cached"]).sum()), "called; every row answered:", bool(whole["error"].isna().all()))
"""),
    md("""
The first run answered what the budget allowed; the second answered those rows from the cache at $0 and
called only the rest.

## Bigger than one machine: Dask

Give `map_rows` a Dask DataFrame and it runs per partition on your Dask cluster
(`pip install 'coffee_nb[dask]'`). Every worker charges the same Redis ledger, so one hard team budget
holds across all workers and machines; the result is a lazy Dask DataFrame, or a pandas one with
`compute=True`, which also shows the workers' progress summed in one bar:

```python
import dask.dataframe as dd
team = Budget(daily=20, ledger="redis://cache.internal:6379/0", name="team-ml")
ddf = dd.read_parquet("tickets/*.parquet")
labelled = coffee_nb.map_rows(ddf, "Classify: {text}", models=["openai/gpt-4o-mini"], budget=team, compute=True)
```
"""),
]

ASK_DATA = [
    md("""
# Ask about your data: figures, images and DataFrames in prompts

A data scientist's questions are about what is on screen: *what does this plot show? why are these rows
odd?* In `%%llm`, a `{field}` whose value is a **figure** or an **image** is sent as a picture, and a
**DataFrame** as a compact table cut to a token limit. No API key needed: `sandbox/vision` is an offline
model that sees (it describes each image by its size and dominant colour, always the same way), and
`sandbox/fast` is text-only, so you can watch the chain route around it.
"""),
    code("""
%load_ext coffee_nb
import coffee_nb, matplotlib, pandas as pd
import matplotlib.pyplot as plt

coffee_nb.configure(ledger="memory", daily=5)  # this tutorial's own budget
fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(["north", "south", "east"], [120, 95, 40], color="tab:blue")
ax.set_title("Units sold by region")
plt.close(fig)  # not drawn here: the model gets it
"""),
    md("""
## A figure in a prompt

`{fig}` goes as an image, where it appears in the text. (The sandbox sees sizes and colours, not
meaning: here the white background is the dominant colour.) The footer says how many images the prompt
carried and what they counted for on the model that answered (by its provider's own rule: OpenAI's
512-px tiles here, since the sandbox counts as OpenAI does).
"""),
    code("""
%%llm sandbox/vision
What does this chart show? {fig}
"""),
    md("""
## The vision fallback

Ask a chain whose first model can't see: it is **skipped** with the reason "no image input" (as a model
whose context window is too small is), and the model that can see answers. The footer says so.
"""),
    code("""
%%llm sandbox/fast sandbox/vision
What colour are the bars? {fig}
"""),
    md("""
The answer's attempts say what happened to each model (`_` is the last answer, as after any cell):
"""),
    code("""
[(a.model, a.outcome, a.error_class) for a in coffee_nb.CallSummary.of(_.message).attempts]
"""),
    md("""
## A DataFrame in a prompt

`{sales}` is not pandas' console layout: it is the frame's shape, its columns with their dtypes, then the
first and last rows as a markdown table, cut to `--context-tokens` (2000 by default), with a note saying
how much is shown. `--show-prompt` shows exactly what would be sent, with the tokens and the worst-case
cost per model, and calls nothing.
"""),
    code("""
sales = pd.DataFrame({
    "region": ["north", "south", "east", "west"] * 2500,
    "units": [(i * 37) % 101 for i in range(10_000)],
    "price": [9.5, 12.0, -1.0, 11.25] * 2500,
})
"""),
    code("""
%%llm sandbox/fast --show-prompt --context-tokens 300
Which columns look wrong? {sales}
"""),
    md("""
`{sales:describe}` sends a summary (count, mean, min, max, nulls per column) instead of rows:
"""),
    code("""
%%llm sandbox/fast --show-prompt --context-tokens 400
Summarise this table: {sales:describe}
"""),
    md("""
## An image file, and what `--show-prompt` shows of it

A path to a PNG, JPEG, GIF or WebP file is sent as the image itself (write `{path:text}` to send the path
as text). `--show-prompt` shows a thumbnail of each image; the dry run under it says that `sandbox/fast`
would be skipped.
"""),
    code("""
from pathlib import Path
from PIL import Image

Path("images").mkdir(exist_ok=True)
for name, colour in [("red", (220, 40, 40)), ("green", (40, 180, 60)), ("blue", (40, 70, 200))]:
    Image.new("RGB", (320, 240), colour).save(f"images/{name}.png")
photo = "images/green.png"
"""),
    code("""
%%llm sandbox/fast sandbox/vision --show-prompt
What is in this picture? {photo}
"""),
    md("""
## A column of images: `%%llm_map`

Each row's `{path}` is that row's image; the text-only model is skipped on every row, and the table
shows who answered.
"""),
    code("""
swatches = pd.DataFrame({"path": ["images/red.png", "images/green.png", "images/blue.png"]})
"""),
    code("""
%%llm_map swatches sandbox/fast sandbox/vision -o described --no-progress
Name the colour of this swatch: {path}
"""),
    code("""
described[["path", "answer", "model", "fallback_from", "input_tokens"]]
"""),
    md("""
## From Python

`coffee_nb.prompt(...)` fills fields the way `%%llm` does (from your variables, or keyword arguments);
`coffee_nb.content_blocks(...)` turns objects into LangChain content blocks for a message you build.
Either goes to `coffee_nb.ask`, an `AutoPicker` or any LangChain chat model.
"""),
    code("""
from langchain_core.messages import HumanMessage
from coffee_nb import AutoPicker

llm = AutoPicker("sandbox/fast", ["sandbox/vision"])
print(llm.invoke([HumanMessage(coffee_nb.content_blocks("Describe", fig))]).content[:60])
print(coffee_nb.ask(coffee_nb.prompt("Describe {fig}"), models=["sandbox/vision"]).text[:60])
"""),
]


COMPARE = [
    md("""
# Compare models side by side: `%%llm_compare` and a judge

Which model should this notebook use? `%%llm_compare` sends the cell's prompt to several models, **one
column each** (no fallback: a column is one model), and shows the answers side by side with each model's
tokens, cost, latency and time to first token. No API key needed: the sandbox answers, at its pretend
*sandbox prices*.
"""),
    code("""
%load_ext coffee_nb
import coffee_nb, pandas as pd
"""),
    code("""
%%llm_compare sandbox/fast sandbox/smart --runs 3
Explain p95 latency in one sentence.
"""),
    md("""
The header says what the comparison would cost at most before anything was sent (a hard budget that
can't cover that refuses it, and no call is made), then what it spent. `--runs 3` calls each model three
times, so the latency columns are p50 / p95 over three calls each.

## Over a DataFrame, with a judge

`--over DF` makes the cell a template filled from each row (`{column}`). `--judge MODEL` has a model
compare each pair of answers. Judges favour the answer in one position (often the first) strongly
enough that a verdict from one order can be that bias alone, so by default each pair is judged **both
ways round**: a winner counts only when both orders name it; otherwise the pair is a **tie**, shown as
`tie (orders disagree)`. The caption gives the judge's **consistency**, how often the two orders agreed,
and the metrics table has a row for the **judge's own calls and cost**, apart from the answers'.

The sandbox judges too, by a fixed rule with a position bias built in (no real judgement): each answer
rates 0-99 from a hash of its text, the answer shown first gets 25 points more, and the higher total
wins. So answers rated more than 25 apart get the same verdict in both orders, and closer ones are ties.
"""),
    code("""
topics = pd.DataFrame({"topic": ["p95 latency", "a token budget", "retries with backoff", "a fallback chain"]})
"""),
    code("""
%%llm_compare sandbox/fast sandbox/smart sandbox/echo --over topics --judge sandbox/smart -o cmp
Explain {topic} to a new data scientist in two sentences.
"""),
    md("""
`-o cmp` keeps the `Comparison`. `cmp.judge.frame` has one verdict per pair and row (`consistent`: did the
two orders agree), `cmp.judge.calls` one row per request to the judge (which answer it saw first and what
it said), and `cmp.summary` the models × metrics table with the judge's standings and, per model, its
consistency on that model's pairs:
"""),
    code('cmp.judge.frame[["row", "model_a", "model_b", "winner", "consistent"]]'),
    code('cmp.judge.calls[["row", "shown_first", "winner"]].head(4)'),
    code('cmp.summary[["cost", "wins", "ties", "losses", "consistency"]]'),
    code("""
print(f"consistency {cmp.judge.consistency:.0%}; the judge spent ${cmp.judge.cost:.4f} of ${cmp.cost:.4f} in all")
"""),
    md("""
## One order only

`--judge-order random` asks the judge once per pair, in a seeded random order (`--seed`): half the
judge's cost, but a position-biased verdict then counts as a win (no ties from disagreeing orders here,
and no consistency to report). Everything comes from the response cache this time, at $0: the answers,
and the verdicts too, since each pair in either order was already judged above.
"""),
    code("""
%%llm_compare sandbox/fast sandbox/smart sandbox/echo --over topics --judge sandbox/smart --judge-order random
Explain {topic} to a new data scientist in two sentences.
"""),
    md("""
## From Python

`coffee_nb.compare` (and `await coffee_nb.acompare(...)`) take the same options as keyword arguments:
`judge_order="both"` (the default) or `"random"`, and `judge_mode="score"` for a 1-10 score per answer
(judged both ways round, the two orders' scores are averaged):
"""),
    code("""
scored = coffee_nb.compare(topics, ["sandbox/fast", "sandbox/smart"], template="Explain {topic} briefly.",
                           judge="sandbox/smart", judge_mode="score")
scored.judge.frame[["row", "score_a", "score_b", "consistent"]]
"""),
    code("scored.judge"),
]


NOTEBOOKS = {
    "01_quickstart": QUICKSTART,
    "02_fallbacks_and_faults": FALLBACKS,
    "03_budgets": BUDGETS,
    "04_metrics": METRICS,
    "05_python_api": PYTHON_API,
    "06_real_providers": REAL,
    "07_map_rows": MAP_ROWS,
    "08_ask_about_your_data": ASK_DATA,
    "09_compare": COMPARE,
}


def build(name: str, cells: list[tuple[str, str, list[str]]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source, tags) in enumerate(cells):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell["id"] = f"{name[:2]}-{i:02d}"
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def execute(nb: nbformat.NotebookNode, name: str) -> None:
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as data:
        os.environ["COFFEE_NB_DATA_DIR"] = data  # a fresh ledger and cache, as nbval runs them
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NB)}},
                       allow_errors=True, store_widget_state=True).execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to write (default: all)")
    parser.add_argument("--no-execute", action="store_true")
    args = parser.parse_args()
    for name, cells in NOTEBOOKS.items():
        if args.names and name not in args.names:
            continue
        nb = build(name, cells)
        if not args.no_execute:
            execute(nb, name)
        nbformat.write(nb, NB / f"{name}.ipynb")
        print("wrote", NB / f"{name}.ipynb", file=sys.stderr)


if __name__ == "__main__":
    main()
