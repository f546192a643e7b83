DROP TABLE oversell_ratios;
