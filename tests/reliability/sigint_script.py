"""The plain Python script of suite 14: one call, stream or batch that the test stops with SIGINT.

    python sigint_script.py FACE ROUTE URL [--max-tokens N] [--rows N] [--prompt-words N] [--warm]

FACE: ask | stream | map (`df.llm.map` over ROWS rows). ROUTE: local (the embedded model), lean
(the loopback as an `add_endpoint` endpoint) or litellm (the loopback through litellm). URL: the
loopback's, or "-" for local.

It prints one JSON line per event, with the wall-clock time it happened (`t`):
- "ready" just before the call starts (after `--warm`: one short call that loads the model);
- "text" at the first streamed chunk;
- "interrupted" when the KeyboardInterrupt reaches the script: its message, the streamed text,
  whether litellm had finished loading; then the exception goes on, as in any script;
- "returned" if the call ended by itself (for map: the result's counts and job id);
- "exiting" from the first atexit handler registered, which runs last: after it only the
  interpreter's own teardown is left.
"""

from __future__ import annotations

import argparse
import atexit
import json
import sys
import time


def say(event: str, **fields) -> None:
    print(json.dumps(dict(fields, event=event, t=time.time())), flush=True)


def main() -> None:
    atexit.register(say, "exiting")      # registered first: runs after every other handler
    parser = argparse.ArgumentParser()
    parser.add_argument("face", choices=["ask", "stream", "map"])
    parser.add_argument("route", choices=["local", "lean", "litellm"])
    parser.add_argument("url")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--prompt-words", type=int, default=0)
    parser.add_argument("--warm", action="store_true")
    args = parser.parse_args()

    import llm_notebook

    session = llm_notebook.session()
    options: dict = {"cache": False}
    if args.max_tokens:
        options["max_tokens"] = args.max_tokens
    if args.route == "local":
        model = "local/smollm2"
    elif args.route == "lean":
        session.add_endpoint("loop", args.url)
        model = "loop/loopback-model"
    else:
        model = "openai/gpt-4o-mini"
        options.update(api_base=args.url, api_key="sk-loopback-test-key")
    if args.warm:
        session.ask("Say hi.", model=model, **dict(options, max_tokens=2))
    prompt = "Write a very long story about a dragon."
    if args.prompt_words:
        prompt = "Summarise this: " + " ".join(["the quick brown fox"] * (args.prompt_words // 4))

    received: list[str] = []
    try:
        if args.face == "ask":
            say("ready")
            response = session.ask(prompt, model=model, **options)
            say("returned", status=response.status, chars=len(response.text))
        elif args.face == "stream":
            say("ready")
            for chunk in session.stream(prompt, model=model, **options):
                if not received:
                    say("text")
                received.append(chunk)
            say("returned", chars=len("".join(received)))
        else:
            import pandas as pd

            frame = pd.DataFrame({"item": [f"item {i:03d}" for i in range(args.rows)]})
            say("ready")
            out = frame.llm.map("Tell me a long story about {item}.", model=model,
                                progress=False, **options)
            info = out.attrs["llm"]
            say("returned", ok=int(info["ok"]), resumed=int(info["resumed"]),
                missing=int(out.isna().sum()), job_id=info["job_id"])
    except KeyboardInterrupt as exc:
        from llm_notebook.providers import litellm_route

        say("interrupted", message=str(exc), received="".join(received),
            litellm_loaded=litellm_route.loaded())
        raise


if __name__ == "__main__":
    sys.exit(main())
