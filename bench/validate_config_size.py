"""What `postflight validate-config` (and `run`'s start) costs on a big configuration: CPU
seconds to read, parse and validate N environments, each with three checks and three
rules, median of R runs in this process (the imports not counted), and the YAML parse's
own share.

    python bench/validate_config_size.py [--environments 500] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from agent.settings_file import ConfigLoader, load_config_text
from bench.processes import timing_args

HEAD = """\
server:
  listen: 127.0.0.1:8787
  api_tokens: ["tok-1234567890abcdef"]
x-http: &http {type: http, expect: {status: 200, max_latency: 800ms}}
environments:
"""
ENVIRONMENT = """\
  env-{i}:
    base_url: http://127.0.0.1:9/{i}
    window: 15m
    interval: 30s
    checks:
      - {{<<: *http, name: health, path: /health}}
      - name: home
        type: http
        path: /
        headers: {{X-Env: env-{i}, X-At: "10:30"}}
        expect: {{status: 200, json: {{ok: true, released: 2024-01-01}}}}
      - name: feed
        type: load
        path: /feed
        rate: 5/s
        duration: 10s
        max_error_rate: 2%
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
      - {{name: latency, source: checks, metric: latency_p95, max_increase: 50%}}
      - {{name: feed-errors, source: checks, check: feed, metric: error_rate, max: 0.02}}
    rollback:
      url: http://127.0.0.1:9998/rollback/{i}
      secret: shh-secret-{i}
"""


def config(environments: int) -> str:
    return HEAD + "".join(ENVIRONMENT.format(i=i) for i in range(environments))


def cpu(work: object) -> float:
    start = time.process_time()
    work()  # type: ignore[operator]
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=500)
    args = timing_args(parser, runs=3)
    text = config(args.environments)
    load_config_text(text, env={})  # valid, and warm
    whole = [cpu(lambda: load_config_text(text, env={})) for _ in range(args.runs)]
    parse = [cpu(lambda: yaml.load(text, Loader=ConfigLoader)) for _ in range(args.runs)]
    figures = {
        "environments": args.environments,
        "bytes": len(text.encode()),
        "libyaml": yaml.__with_libyaml__,
        "load_config_cpu_s": round(statistics.median(whole), 3),
        "one_python_yaml_load_cpu_s": round(statistics.median(parse), 3),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
