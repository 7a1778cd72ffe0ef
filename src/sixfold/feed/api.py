"""HTTP doors of the feed system. Each section is owned by the module named in its heading."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["feed"])

# ---- users and follows (users.py, graph.py) -----------------------------------------------------

# ---- posts and timelines (posts.py, timelines.py) -----------------------------------------------

# ---- media (media.py) ---------------------------------------------------------------------------

# ---- stories (stories.py) -----------------------------------------------------------------------

# ---- search (search.py) -------------------------------------------------------------------------

# ---- page: GET /feed/{user_id} ------------------------------------------------------------------
