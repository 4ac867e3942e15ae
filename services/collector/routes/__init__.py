"""HTTP routes by audience: ratings (source keys), admin (operators), channels (people); built from deps.

``guard`` decides who may post a rating; ``admin_models`` holds the admin API's bodies.
"""
