"""The hub's web layer: JSON API, dashboard and admin pages, their templates, strings and charts."""
