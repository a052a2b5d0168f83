"""After training: try a run's adapter beside its base model, merge it, push it to the Hugging Face Hub.

    source.py   which adapter a run folder offers (adapter/, or the newest checkpoint of a running run)
    generate.py answers from the adapter and the base model, streamed token by token
    worker.py   the process that generates for the app (`python -m finetune.adapter.worker`)
    service.py  the app's side of it: the worker on a job-manager slot, idle timeout, waiting
    merge.py    base + adapter as one model (`python -m finetune merge`)
    card.py     the model card and its loss curve
    hub.py      the push (`python -m finetune push`) and push-when-done (`hub.repo_id`)
    keeper.py   push-when-done on a Space, with the launcher's own token
    cli.py      the generate, merge and push commands

Never imports gradio; the page is finetune/ui/playground.py.
"""
