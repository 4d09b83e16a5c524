//! Gaps between what a source holds and the reference schema: tables and
//! columns missing or beyond it, and columns whose type differs. Computed
//! once, here, for any [`Inventory`], so every source reports the same way.

use cutover_engine::Inventory;
use serde::Serialize;

use super::reference::{reference_table, reference_tables, SqlType};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GapReport {
    /// Reference tables the source does not have.
    pub missing_tables: Vec<String>,
    /// Source tables the reference does not know (carried, never dropped).
    pub extra_tables: Vec<String>,
    /// Per source table that matches a reference table, only where there is a gap.
    pub tables: Vec<TableGaps>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableGaps {
    pub table: String,
    pub missing_columns: Vec<String>,
    pub extra_columns: Vec<String>,
    pub type_differences: Vec<TypeDifference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeDifference {
    pub column: String,
    pub reference: String,
    pub source: String,
}

impl GapReport {
    pub fn is_empty(&self) -> bool {
        self.missing_tables.is_empty() && self.extra_tables.is_empty() && self.tables.is_empty()
    }
}

/// Compares `inventory` with the reference schema (names case-insensitive).
pub fn gap_report(inventory: &Inventory) -> GapReport {
    let mut report = GapReport::default();
    for reference in reference_tables() {
        if inventory.table(&reference.name).is_none() {
            report.missing_tables.push(reference.name.clone());
        }
    }
    for table in &inventory.tables {
        let Some(reference) = reference_table(&table.name) else {
            report.extra_tables.push(table.name.clone());
            continue;
        };
        let has = |name: &str| {
            table
                .columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(name))
        };
        let missing_columns: Vec<String> = reference
            .columns
            .iter()
            .filter(|c| !has(&c.name))
            .map(|c| c.name.clone())
            .collect();
        let mut extra_columns = Vec::new();
        let mut type_differences = Vec::new();
        for column in &table.columns {
            match reference.column(&column.name) {
                None => extra_columns.push(column.name.clone()),
                Some(expected) => {
                    if SqlType::parse(&column.sql_type).ok() != Some(expected.sql_type) {
                        type_differences.push(TypeDifference {
                            column: column.name.clone(),
                            reference: expected.sql_type.to_string(),
                            source: column.sql_type.clone(),
                        });
                    }
                }
            }
        }
        if !missing_columns.is_empty() || !extra_columns.is_empty() || !type_differences.is_empty()
        {
            report.tables.push(TableGaps {
                table: table.name.clone(),
                missing_columns,
                extra_columns,
                type_differences,
            });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_engine::{ColumnInfo, TableInfo};

    fn column(name: &str, sql_type: &str) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            sql_type: sql_type.into(),
            nullable: true,
        }
    }

    #[test]
    fn reports_missing_extra_and_retyped() {
        let mut tables: Vec<TableInfo> = reference_tables()
            .iter()
            .filter(|t| t.name != "Document")
            .map(|t| TableInfo {
                name: t.name.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| column(&c.name, &c.sql_type.to_string()))
                    .collect(),
                row_count: 0,
                primary_key: t.primary_key.clone(),
                modified_column: None,
            })
            .collect();
        let patient = tables.iter_mut().find(|t| t.name == "Patient").unwrap();
        patient.columns.retain(|c| c.name != "WorkPhone");
        patient
            .columns
            .push(column("FavoriteColor", "NVARCHAR(MAX)"));
        patient
            .columns
            .iter_mut()
            .find(|c| c.name == "DateOfBirth")
            .unwrap()
            .sql_type = "NVARCHAR(20)".into();
        tables.push(TableInfo {
            name: "tblAudit".into(),
            columns: vec![],
            row_count: 3,
            primary_key: vec![],
            modified_column: None,
        });
        let report = gap_report(&Inventory { tables });
        assert_eq!(report.missing_tables, ["Document"]);
        assert_eq!(report.extra_tables, ["tblAudit"]);
        assert_eq!(report.tables.len(), 1);
        let gaps = &report.tables[0];
        assert_eq!(
            (
                gaps.table.as_str(),
                gaps.missing_columns.clone(),
                gaps.extra_columns.clone()
            ),
            (
                "Patient",
                vec!["WorkPhone".to_string()],
                vec!["FavoriteColor".to_string()]
            )
        );
        assert_eq!(
            gaps.type_differences,
            vec![TypeDifference {
                column: "DateOfBirth".into(),
                reference: "DATE".into(),
                source: "NVARCHAR(20)".into()
            }]
        );
    }
}
