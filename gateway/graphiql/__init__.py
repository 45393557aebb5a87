"""GraphiQL for browsers: the page, its pinned assets, and the command that downloads them."""

from gateway.graphiql.assets import AssetError
from gateway.graphiql.page import GraphiQLPage

__all__ = ["AssetError", "GraphiQLPage"]
