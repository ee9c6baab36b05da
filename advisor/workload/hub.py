"""Hugging Face Hub ids (``Qwen/Qwen2-7B``): fetch the model's ``config.json`` only, never its weights.

Needs the optional extra ``hub`` (``pip install 'gpu-advisor[hub]'``: ``huggingface_hub``).  The file
goes through the hub's own cache (``HF_HOME``), so a config fetched once also works offline
(``HF_HUB_OFFLINE=1``); gated models need ``huggingface-cli login`` (or ``HF_TOKEN``) like any hub
download.  Every failure is a ``WorkloadError`` that says what to do instead.
"""

from __future__ import annotations

import re
from typing import Any

from advisor.errors import WorkloadError

#: owner/name as the hub spells repository ids (letters, digits, '-', '_', '.'; at most 96 characters each, as
#: huggingface_hub's validate_repo_id allows).
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
INSTALL_HINT = "pip install 'gpu-advisor[hub]' (huggingface_hub), or download config.json and pass its path"


def looks_like_hub_id(text: str) -> bool:
    """``owner/name`` with hub-legal characters (and not a path that exists or a .json file)."""
    from advisor.files import path_state

    return bool(_REPO_ID.match(text)) and not text.endswith(".json") and path_state(text) == "missing"


def fetch_config(repo_id: str, *, revision: str | None = None) -> dict[str, Any]:
    """The ``config.json`` of ``repo_id`` from the Hugging Face Hub (or its local cache), as a dict.

    Raises:
        WorkloadError: huggingface_hub missing, offline, gated, no such repo, no config.json, bad JSON.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise WorkloadError(f"{repo_id!r} looks like a Hugging Face Hub id, but huggingface_hub is not installed",
                            INSTALL_HINT) from exc
    try:
        path = hf_hub_download(repo_id, "config.json", revision=revision)
    except Exception as exc:  # the hub's errors differ by version: sort them by name, keep the cause
        raise _hub_error(repo_id, exc) from exc
    from advisor.files import read_json_object

    data = read_json_object(path, kind="config", what=f"the hub's config.json of {repo_id!r}, cached as",
                            hint="download it and pass its path", error=WorkloadError)
    data.setdefault("_name_or_path", repo_id)
    return data


def _hub_error(repo_id: str, exc: BaseException) -> WorkloadError:
    names = {c.__name__ for c in type(exc).__mro__}
    download = f"download https://huggingface.co/{repo_id}/blob/main/config.json and pass its path"
    if "GatedRepoError" in names:
        return WorkloadError(f"{repo_id!r} is a gated model: the hub refused config.json without access",
                             f"accept its license on huggingface.co and run `huggingface-cli login` (or set "
                             f"HF_TOKEN), or {download}")
    if "RepositoryNotFoundError" in names:
        return WorkloadError(f"no Hugging Face Hub model {repo_id!r} (or it is private)",
                             "check the spelling (owner/name, as in the model page's URL), or log in for a private "
                             "model")
    if "EntryNotFoundError" in names and "LocalEntryNotFoundError" not in names:
        return WorkloadError(f"{repo_id!r} has no config.json (e.g. a GGUF-only or adapter-only repository)",
                             "pass the base model's id or its config.json")
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "Timeout", "ConnectTimeout",
                "ReadTimeout", "MaxRetryError", "NewConnectionError"}:
        return WorkloadError(f"cannot fetch config.json of {repo_id!r}: the hub is not reachable and the file is not "
                             f"in the local hub cache ({type(exc).__name__})",
                             f"connect to the network once (the file is cached for offline use), or {download}")
    return WorkloadError(f"cannot fetch config.json of {repo_id!r} from the hub ({type(exc).__name__}: {exc})",
                         download)
