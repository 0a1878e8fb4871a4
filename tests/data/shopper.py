"""A deterministic stand-in for a GPT-4-class shopper: a policy that reads the page it is shown."""

import re

from eef.agent.policy import Completion, Policy


class Shopper(Policy):
    """Searches the instruction's first words, opens the first result and buys it: some of its
    episodes succeed, others fail. Token counts are words, and every call is tallied."""

    name = "fake-gpt"

    def __init__(self):
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def generate(self, requests, params):
        out = []
        for request in requests:
            page = request.messages[-1]["content"]
            text = f"Thought: I act on this page.\nAction: {self._action(page)}"
            prompt = sum(len(m["content"].split()) for m in request.messages)
            completion = len(text.split())
            self.calls += 1
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            out.append(Completion(text, prompt, completion))
        return out

    @staticmethod
    def _action(page):
        if page.startswith("WebShop [SEP] Instruction:"):
            instruction = page.split(" [SEP] ")[2]
            return f"search[{' '.join(instruction.split()[3:7])}]"
        if "Total results" in page:
            asin = re.search(r"\bB\d{4}\b", page)
            return f"click[{asin[0]}]" if asin else "click[back to search]"
        if "Buy Now" in page:
            return "click[buy now]"
        return "click[back to search]"

    def close(self):
        pass
