"""Photo feed (Instagram): users and follows, media, posts, hybrid fanout timelines, stories, search."""
