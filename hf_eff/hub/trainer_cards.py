"""`Trainer.push_to_hub` with the hf-eff card of the trained artifact."""

from __future__ import annotations

from pathlib import Path

from hf_eff.hub.push import build_card


class HubCardTrainerMixin:
    """Base for the hf-eff trainers: ``create_model_card`` writes the artifact's hf-eff card.

    ``Trainer.push_to_hub`` (also called by ``save_model`` when ``push_to_hub=True``) saves the
    model, calls ``create_model_card`` and uploads the output folder. transformers' own card is a
    generic training summary that knows nothing of noise tables, teaching or splats; this one is
    the card ``hf-eff push`` writes. Its results are the latest value of every key in the log
    history, overridden by what this trainer passed to ``save_metrics`` (the examples' closing
    ``all_results.json``). A results file an earlier run left in a reused ``output_dir`` is not read:
    its figures would describe another model.

    Use: ``class MyTrainer(HubCardTrainerMixin, Trainer)`` with ``card_kind`` set to one of
    ``hf_eff.hub.cards.KINDS``.
    """

    card_kind: str

    def save_metrics(self, split, metrics, combined=True):
        super().save_metrics(split, metrics, combined)
        self._saved_metrics = {**getattr(self, "_saved_metrics", {}), **metrics}

    def create_model_card(self, language: str | None = None, license: str | None = None,
                          tags: str | list[str] | None = None, model_name: str | None = None,
                          finetuned_from: str | None = None, dataset: str | list[str] | None = None) -> None:
        if not self.is_world_process_zero():
            return
        output_dir = Path(self.args.output_dir)
        results: dict = {}
        for entry in self.state.log_history:
            results.update(entry)
        results.update(getattr(self, "_saved_metrics", {}))
        repo_id = self.hub_model_id or self.args.hub_model_id or model_name or output_dir.name
        card = build_card(self.card_kind, output_dir, repo_id, results)
        if language is not None:
            card.data.language = language
        if license is not None:
            card.data.license = license
        if finetuned_from is not None:
            card.data.base_model = finetuned_from
        if dataset is not None:
            card.data.datasets = [dataset] if isinstance(dataset, str) else list(dataset)
        if tags is not None:
            extra = [tags] if isinstance(tags, str) else list(tags)
            card.data.tags = list(card.data.tags or []) + [t for t in extra if t not in (card.data.tags or [])]
        card.save(output_dir / "README.md")
