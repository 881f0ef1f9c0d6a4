DROP INDEX departures_record;
DROP INDEX departures_from;
DROP TABLE departures;
