"""The HTTP app: one APIRouter per system, mounted by `sixfold.api.app.create_app`."""
