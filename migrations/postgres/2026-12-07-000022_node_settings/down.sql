DROP TABLE node_settings;
