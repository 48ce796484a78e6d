"""gptoss-sky: deploy gpt-oss on the cheapest GPU SkyPilot can reach.

Modules, one concern each (dependencies point down the list):
  cli/          click + rich commands; the only place that prints or exits
  lifecycle     plan -> render -> launch -> wait -> smoke, through skyapi
  skyapi        the ONLY module that imports `sky`
  state         local deployment records and API keys
  plan          price and rank offers for fitting recipes
  render        Jinja2 templates -> SkyPilot task / service YAML
  recipes       which (model, GPU, count) combinations to ship, with flags
  capacity      vLLM's weight and KV-cache arithmetic
  catalog       loads catalogs/*.yaml into typed objects
  smoke, bench  endpoint checks and load generation (httpx)
  errors        the exception tree
"""

__version__ = "0.1.0"
