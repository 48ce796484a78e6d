"""Run one gpt_oss eval on a subset of N questions, once each, and print one marker line.

Standalone on purpose: it runs under the interpreter that has `gpt-oss` (Python >= 3.12), which
need not have gptoss-sky installed, so it imports only the standard library and gpt_oss.
Needed because `python -m gpt_oss.evals --examples N` asserts n_repeats == 1 unless --debug
(gpt-oss 0.0.9), and --debug reduces GPQA to one question. Takes the same flags as that CLI.
The API key comes from OPENAI_API_KEY, which the OpenAI client reads.
"""

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--eval", required=True, choices=["gpqa", "aime25"])
    parser.add_argument("--reasoning-effort", required=True)
    parser.add_argument("--sampler", choices=["responses", "chat_completions"], default="responses")
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--n-threads", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    args = parser.parse_args()

    if args.sampler == "responses":
        from gpt_oss.evals.responses_sampler import ResponsesSampler as Sampler
    else:
        from gpt_oss.evals.chat_completions_sampler import ChatCompletionsSampler as Sampler
    sampler = Sampler(
        model=args.model,
        reasoning_model=True,
        reasoning_effort=args.reasoning_effort,
        temperature=args.temperature,
        base_url=args.base_url,
        max_tokens=131_072,
    )
    if args.eval == "gpqa":
        from gpt_oss.evals.gpqa_eval import GPQAEval

        evaluation = GPQAEval(n_repeats=1, num_examples=args.examples, n_threads=args.n_threads)
    else:
        from gpt_oss.evals.aime_eval import AIME25Eval

        evaluation = AIME25Eval(n_repeats=1, num_examples=args.examples, n_threads=args.n_threads)
    result = evaluation(sampler)
    print("GPTOSS_SKY_EVAL_RESULT " + json.dumps({"score": result.score, "metrics": result.metrics}), flush=True)


if __name__ == "__main__":
    main()
