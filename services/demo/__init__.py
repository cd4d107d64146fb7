"""The demo corpus shipped with expertmatch: a fictional company's people, posts and questions."""
