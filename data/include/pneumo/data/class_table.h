// Image-level label tables for classifiers, read as they are published:
// - generic: a CSV with a header, an `id` (or `ImageId`) or `path` column, an optional
//   `patient` (or `PatientID`) column, and one column per class holding 1, 0, -1 (uncertain) or
//   blank (1.0 / 0.0 / -1.0 too);
// - chestxray14: NIH's Data_Entry_2017.csv (`Image Index`, `Finding Labels` joined by `|`,
//   `No Finding`, `Patient ID`, ...), optionally restricted by its train_val_list.txt or
//   test_list.txt;
// - chexpert: CheXpert's train.csv / valid.csv (`Path`, `Sex`, `Age`, `Frontal/Lateral`,
//   `AP/PA`, then the 14 observations with 1 / 0 / -1 / blank; the patient is the path's
//   `patientNNNNN` folder).
// Each row becomes one target per chosen class: 1, 0, or NaN (ignored: masked out of the loss
// and the metrics).
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace pneumo::data {

enum class TableFormat { kGeneric, kChestXray14, kChexpert };

// What an uncertain (-1) or a blank cell becomes.
enum class CellPolicy { kOnes, kZeros, kIgnore };

struct ClassTableOptions {
  std::string format = "auto";       // auto | generic | chestxray14 | chexpert
  std::vector<std::string> classes;  // empty: the format's own (see ClassTable::read)
  CellPolicy uncertain = CellPolicy::kIgnore;
  std::vector<std::pair<std::string, CellPolicy>> uncertain_by_class;  // overrides `uncertain`
  CellPolicy blank = CellPolicy::kZeros;  // a blank cell: "not mentioned" (CheXpert's reading)
  std::filesystem::path split_list;       // ChestX-ray14 list file: keep only the images it names
};

struct ClassRow {
  std::string image_id;        // the file name without extension, or the path without it
  std::filesystem::path path;  // the path column as written (empty for id tables)
  std::string patient;         // empty when the table names none
  std::vector<float> targets;  // per class: 1, 0 or NaN (ignored)
  int line = 0;                // 1-based line in the table, for messages
};

class ClassTable {
 public:
  // Reads the table, detecting its format from the header when options.format is auto
  // (`Finding Labels` -> chestxray14, `Path` with `Frontal/Lateral` -> chexpert, else generic).
  // Classes default to the 14 ChestX-ray14 findings in CheXNet's order (chestxray14), the 14
  // observations in table order (chexpert), or every class column (generic). Throws DataError
  // naming the file and line for a malformed row or cell, a duplicate image, a class not in
  // the table (listing those it has), or a split list naming no row.
  static ClassTable read(const std::filesystem::path& file, const ClassTableOptions& options);

  const std::filesystem::path& source() const { return source_; }
  TableFormat format() const { return format_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<ClassRow>& rows() const { return rows_; }

 private:
  std::filesystem::path source_;
  TableFormat format_ = TableFormat::kGeneric;
  std::vector<std::string> classes_;
  std::vector<ClassRow> rows_;
};

// The 14 ChestX-ray14 findings in CheXNet's order (Pneumothorax is index 7).
const std::vector<std::string>& chestxray14_classes();

const char* table_format_name(TableFormat format);
CellPolicy cell_policy(const std::string& name);  // ones | zeros | ignore; ConfigError otherwise

// Splits one CSV line into fields (double-quoted fields may hold commas and "" quotes).
std::vector<std::string> split_csv_line(const std::string& line);

}  // namespace pneumo::data
