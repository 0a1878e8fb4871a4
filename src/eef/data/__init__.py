"""Expert data: import the public expert trajectories, generate new ones, check them by replay.

* :mod:`eef.data.importers`: ETO, AgentGym, the EEF authors' set and OpenAI files -> trajectories
  whose task ids are resolved in an eef environment (:mod:`eef.data.resolve`).
* :mod:`eef.data.generate`: any policy (API, local model, program) on a split, resumable, with
  token counts and cost.
* :mod:`eef.data.check`: replay every trajectory and flag those whose observations or reward
  differ from the record (``meta["replay"]``).
* :mod:`eef.data.fetch`: download the public sets and the WebShop product files.
"""
