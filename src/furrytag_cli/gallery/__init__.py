"""An offline HTML gallery of tagging results: read them, make thumbnails, write the page."""
