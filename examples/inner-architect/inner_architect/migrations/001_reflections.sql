CREATE TABLE reflections (
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
