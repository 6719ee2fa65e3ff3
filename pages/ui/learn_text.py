"""The Learn page's words, in English and Chinese.

``text(lang, key, **values)`` returns the text for a key with the numbers filled in. Both languages
have every key (a test checks it). The Chinese is written for Chinese readers, not translated word by
word; technical names that appear in code (``padding=True``, ``max_length``...) stay in English.
"""
from __future__ import annotations

LANGUAGES = {"en": "English", "zh": "中文"}

EN: dict[str, str] = {
    "title": "Learn: from text to training steps",
    "intro": "Every number on this page comes from the real tokenizer and the real Trainer arithmetic. "
             "Change the inputs and watch what happens.",
    "model_label": "Tokenizer of the model",
    "model_help": "'bundled-minilm' works offline (the same uncased WordPiece vocabulary as bert-base-uncased). "
                  "A Hub id such as 'bert-base-uncased' needs the internet; a local folder saved with "
                  "save_pretrained works too.",
    "model_loaded": "Tokenizer: {name} · vocabulary of {vocab:,} word pieces · lower-cases text: {lower}",
    "tab_tokens": "1 · Tokens",
    "tab_padding": "2 · Padding & truncation",
    "tab_map": "3 · The map step",
    "tab_stats": "4 · Data set lengths",
    "tab_steps": "5 · Epochs & steps",

    # 1. tokens
    "tok_header": "Tokenizer playground",
    "tok_intro": "A model does not read letters: the tokenizer cuts the text into word pieces and looks up "
                 "each piece's number (its ID) in a fixed vocabulary. The attention mask says which positions "
                 "hold real text (1) and which are padding (0).",
    "tok_input": "Type any text",
    "tok_chips": "Tokens, in order",
    "tok_legend": "Grey: special token · blue: a word or its first piece · orange: a word piece that continues "
                  "the previous one (##) · red: unknown [UNK]",
    "count_chars": "Characters",
    "count_words": "Words",
    "count_tokens": "Tokens",
    "count_unknown": "Unknown [UNK]",
    "count_help_tokens": "{text} from the text plus {special} special tokens",
    "col_position": "#",
    "col_token": "Token",
    "col_id": "ID",
    "col_mask": "Attention mask",
    "col_kind": "Kind",
    "col_chars": "Characters",
    "col_source": "From the text",
    "kind_special": "special",
    "kind_piece": "word piece (##)",
    "kind_unk": "unknown [UNK]",
    "kind_word": "word",
    "unk_warning": "{n} token(s) became [UNK]: the vocabulary has no piece for these characters, so the model "
                   "cannot tell them apart. The characters are:",
    "empty_text": "Type some text to see its tokens.",
    "tok_special": "**Special tokens.** `[CLS]` opens every input; the classifier reads its final vector to "
                   "pick a label (negative or positive for sentiment, or one of a run's own classes). `[SEP]` "
                   "closes the input (or separates two texts). `[PAD]` "
                   "fills short rows of a batch and gets attention mask 0. `[UNK]` stands for characters the "
                   "vocabulary does not know. A piece starting with `##` continues the word before it.",
    "tok_offsets": "**Offsets.** Each token remembers which characters it came from (start–end). Special "
                   "tokens come from no characters (0–0). This uncased tokenizer lower-cases and strips accents, "
                   "so `Test` and `test` get the same ID.",

    # 2. padding
    "pad_header": "Padding and truncation on a batch",
    "pad_intro": "A batch is a rectangle: every row must have the same length. Short reviews are padded with "
                 "`[PAD]` (mask 0); reviews longer than `max_length` are cut (truncated). Padding costs compute, "
                 "truncation loses text.",
    "pad_source": "Reviews for the batch",
    "pad_source_type": "Type them (one per line)",
    "pad_source_pick": "Pick from the data set",
    "pad_texts": "One review per line",
    "pad_pick": "Reviews from the data set (tab 4's data)",
    "pad_maxlen": "max_length (tokens)",
    "pad_mode": "Padding",
    "mode_longest": "padding=True (to the longest in the batch)",
    "mode_max_length": "padding=\"max_length\"",
    "mode_dynamic": "dynamic (the collator pads each training batch)",
    "mode_help_longest": "Every row is padded to the longest row of this batch.",
    "mode_help_max_length": "Every row is padded to max_length, however short it is.",
    "mode_help_dynamic": "Nothing is padded while tokenizing; DataCollatorWithPadding pads each training batch "
                         "to its own longest row, so different batches have different widths.",
    "pad_collator": "Training batch size for the collator",
    "pad_ids_chart": "input_ids (hover for the token)",
    "pad_mask_chart": "attention_mask (1 = real token, 0 = padding)",
    "pad_share": "Padding share",
    "pad_processed": "Positions computed",
    "pad_real": "Real tokens",
    "pad_compare": "The same batch with each kind of padding",
    "col_mode": "Padding",
    "col_width": "Widest row",
    "col_processed": "Positions computed",
    "col_padding_share": "Padding share",
    "pad_truncated": "Cut off by truncation",
    "pad_truncated_row": "Review {row}: {n} token(s) cut off ({full} → {kept}). The lost text:",
    "pad_none_truncated": "Nothing was cut: every review fits in {max_length} tokens.",
    "pad_empty": "Add at least one review.",
    "legend_text": "text", "legend_special": "special", "legend_padding": "padding",
    "axis_position": "position", "axis_row": "review",

    # 3. map
    "map_header": "The map step: what tokenizing does to a data set",
    "map_intro": "The tutorial tokenizes the whole data set with `dataset.map(tokenize, batched=True)`. "
                 "`batched=True` hands the function 1,000 reviews at a time, which lets the fast tokenizer work "
                 "on many texts at once. Each example keeps `text` and `label` and gains `input_ids`, "
                 "`token_type_ids` and `attention_mask`. `set_format(\"torch\", columns=[...])` then makes the "
                 "chosen columns come out as PyTorch tensors and hides the rest (the text).",
    "map_index": "Example number",
    "map_padding": "padding inside tokenize",
    "map_pad_true": "padding=True (the tutorial)",
    "map_pad_false": "no padding (dynamic, padded later by the collator)",
    "map_before": "Before map",
    "map_after": "After map(tokenize, batched=True)",
    "map_format": "After set_format(\"torch\", columns=[...])",
    "map_columns": "Columns: {before} → {after} → {formatted}",
    "map_summary": "This example has {real} real tokens and {pad} padding tokens: its map batch (reviews "
                   "{start}–{end}) was padded to its longest review, {width} tokens.",
    "map_summary_nopad": "This example has {real} tokens and no padding yet: the collator will pad it with "
                         "the other reviews of its training batch.",
    "map_cost": "The hidden cost: with `padding=True` inside `map`, a short review shares its map batch with "
                "the longest of 1,000 reviews, so it is padded to that length (up to max_length) and the model "
                "computes all those padding positions in every epoch. Tab 4 measures this on the whole data set.",
    "map_no_data": "Load a data set in tab 4 to see its examples here.",

    # 4. stats
    "stats_header": "Token lengths of a whole data set",
    "stats_intro": "How long are the reviews in tokens? How many get cut at max_length, and how much of the "
                   "model's work goes into padding? Computed over every review with the fast tokenizer, then kept "
                   "in a cache.",
    "ds_source": "Data set",
    "ds_demo": "Built-in movie reviews",
    "ds_upload": "Upload a file",
    "ds_path": "Local path",
    "ds_hub": "Hugging Face Hub",
    "ds_split": "Split",
    "ds_upload_label": "CSV, TSV, JSON Lines, JSON or Parquet",
    "ds_column": "Column with the text",
    "ds_path_label": "Path to a file or an aclImdb folder on this server",
    "ds_hub_label": "Hub data set id",
    "ds_strip_html": "Turn <br /> tags into line breaks first (as training does)",
    "ds_need_file": "Choose a file to measure.",
    "ds_need_path": "Type a path to measure.",
    "ds_loaded": "{n:,} reviews from {source}",
    "ds_skipped": "{n:,} empty rows were skipped.",
    "stats_maxlen": "max_length (tokens)",
    "stats_batch": "Training batch size",
    "stats_computing": "Tokenizing {n:,} reviews…",
    "m_texts": "Reviews",
    "m_median": "Median length",
    "m_p95": "95% are shorter than",
    "m_truncated": "Cut by max_length",
    "m_lost": "Tokens lost",
    "m_lost_help": "{lost:,} of {total:,} tokens",
    "hist_title": "How many reviews have each length (red line: max_length)",
    "hist_x": "tokens per review",
    "hist_y": "reviews",
    "hist_cut": "cut at max_length",
    "hist_kept": "fits",
    "padding_header": "Share of compute spent on padding",
    "scheme_tutorial": "padding=True inside map (the tutorial)",
    "scheme_dynamic": "dynamic padding, random batches",
    "scheme_grouped": "dynamic padding, batches grouped by length",
    "scheme_max_length": "padding=\"max_length\"",
    "col_scheme": "How batches are padded",
    "col_positions": "Positions computed per epoch",
    "col_waste": "Padding share",
    "padding_explain": "Padding share = 1 − real tokens ÷ positions computed. The tutorial's padding pads each "
                       "map batch of {map_batch:,} reviews to its longest review; dynamic padding pads each batch "
                       "of {batch} to its own longest; grouping by length puts reviews of similar length into the "
                       "same batch (like `group_by_length`).",
    "stats_error": "Could not measure this data set:",

    # 5. steps
    "calc_header": "Epochs and optimizer steps",
    "calc_intro": "One optimizer step updates the weights once. Its size is the per-device batch × devices × "
                  "gradient accumulation. The Trainer counts batches per epoch, groups them into steps, and "
                  "multiplies by the epochs. The numbers below follow the installed transformers Trainer exactly.",
    "calc_samples": "Training samples",
    "calc_batch": "Batch size per device",
    "calc_devices": "Devices (processes × machines)",
    "calc_accum": "Gradient accumulation steps",
    "calc_epochs": "Epochs",
    "calc_max_steps": "max_steps (-1 = use epochs)",
    "calc_drop_last": "Drop the last incomplete batch (dataloader_drop_last)",
    "calc_use_data": "Training samples in tab 4's data: {n:,}",
    "calc_use_button": "Use this number",
    "m_samples_per_step": "Samples per step",
    "m_steps_per_epoch": "Steps per epoch",
    "m_total_steps": "Total steps",
    "m_final_epoch": "Epoch at the end",
    "formula_header": "The formula with your numbers",
    "f_samples_per_step": "samples per optimizer step",
    "f_batches_per_device": "batches per epoch (each device)",
    "f_steps_per_epoch": "optimizer steps per epoch",
    "f_total_steps": "total optimizer steps",
    "f_epochs_started": "epochs started",
    "note_partial_batch": "The last batch of each epoch holds only {n} sample(s).",
    "note_accum_remainder": "Gradient accumulation: {batches} batches do not divide evenly by {accum}, so the last "
                            "step of each epoch adds up only {last} batch(es).",
    "note_repeated": "With {devices} devices the last round is filled up with {n} sample(s) from the start of "
                     "the epoch, so every device gets the same number of full batches.",
    "note_dropped": "drop_last skips {n} sample(s) in every epoch.",
    "note_max_steps": "max_steps overrides the epochs: training stops after {steps:,} steps, at epoch {epoch:.2f}.",
    "note_fraction": "A fraction of an epoch: the last epoch stops after {steps:,} of its {per_epoch:,} steps.",
    "schedule_header": "When the Trainer logs, evaluates and saves",
    "sch_logging": "logging_steps",
    "sch_eval_strategy": "eval_strategy",
    "sch_eval_steps": "eval_steps (0 = same as logging_steps)",
    "sch_save_strategy": "save_strategy",
    "sch_save_steps": "save_steps",
    "sch_limit": "save_total_limit (0 = keep all)",
    "sch_best": "load_best_model_at_end",
    "sch_steps_help": "A value below 1 means a share of all steps (0.1 = every tenth of training).",
    "timeline_title": "Events over the optimizer steps",
    "ev_log": "log", "ev_eval": "eval", "ev_save": "save",
    "ev_kept": "checkpoint kept", "ev_deleted": "checkpoint deleted",
    "col_step": "Step",
    "col_epoch": "Epoch",
    "col_events": "Events",
    "col_checkpoint": "Checkpoint",
    "kept": "kept",
    "deleted": "deleted",
    "every": "every {n:,} steps",
    "sch_summary": "Logging {log}; evaluation {ev}; saving {save}. {n} checkpoint(s) saved, {k} left at the end.",
    "sch_none": "never",
    "sch_epoch": "at the end of each epoch",
    "best_note": "load_best_model_at_end also keeps the best checkpoint, but which one is best is only known "
                 "after training. Pick one to see what would be left:",
    "best_pick": "Suppose the best checkpoint is",
    "best_left": "Left at the end: {ckpts}",
    "no_events": "No events: the settings never log, evaluate or save before training ends.",
    "calc_error": "These settings do not work:",
    "cut_chars": "The box holds at most {limit:,} characters; the text was cut there.",
    "cut_lines": "Only the first {limit} reviews are used; {n} more line(s) were left out.",
    "cut_line_chars": "{n} line(s) were longer than {limit:,} characters and were cut there.",
    "pick_limit": "Pick up to {limit} reviews.",
    "timeline_truncated": "{n:,} events in all: the timeline and the table show the first and the last ones "
                          "({shown:,}).",
}

ZH: dict[str, str] = {
    "title": "学习：从文本到训练步数",
    "intro": "本页的每个数字都由真实的分词器和 Trainer 的实际算法算出，没有一个是手填的。改动输入，看看结果怎么变。",
    "model_label": "使用哪个模型的分词器",
    "model_help": "'bundled-minilm' 无需联网（与 bert-base-uncased 用同一套不区分大小写的 WordPiece 词表）。"
                  "'bert-base-uncased' 这类 Hub 模型需要联网；也可以填一个用 save_pretrained 保存的本地文件夹。",
    "model_loaded": "分词器：{name} · 词表共 {vocab:,} 个词片 · 是否转小写：{lower}",
    "tab_tokens": "1 · 分词",
    "tab_padding": "2 · 填充与截断",
    "tab_map": "3 · map 这一步",
    "tab_stats": "4 · 数据集长度",
    "tab_steps": "5 · 轮数与步数",

    "tok_header": "分词器试验场",
    "tok_intro": "模型读不懂字母。分词器先把文本切成一个个词片（token），再到固定的词表里查出每个词片的编号（ID）。"
                 "注意力掩码（attention mask）标出哪些位置是真实文本（1），哪些只是填充（0）。",
    "tok_input": "随便输入一段文字",
    "tok_chips": "按顺序排列的词片",
    "tok_legend": "灰色：特殊符号 · 蓝色：完整的词或词的开头 · 橙色：接在前一片后面的词片（##）· 红色：未知词 [UNK]",
    "count_chars": "字符数",
    "count_words": "词数",
    "count_tokens": "词片数",
    "count_unknown": "未知词 [UNK]",
    "count_help_tokens": "文本切出 {text} 个，另加 {special} 个特殊符号",
    "col_position": "#",
    "col_token": "词片",
    "col_id": "ID",
    "col_mask": "注意力掩码",
    "col_kind": "类型",
    "col_chars": "字符位置",
    "col_source": "对应原文",
    "kind_special": "特殊符号",
    "kind_piece": "后续词片 (##)",
    "kind_unk": "未知词 [UNK]",
    "kind_word": "词",
    "unk_warning": "有 {n} 个词片变成了 [UNK]：词表里没有这些字符，模型无法区分它们。这些字符是：",
    "empty_text": "输入一些文字，就能看到它的分词结果。",
    "tok_special": "**特殊符号。** 每段输入都以 `[CLS]` 开头，分类器正是根据它最后的向量来选出类别"
                   "（情感任务里是好评或差评，也可以是自定义的多个类别）；"
                   "`[SEP]` 放在结尾（或隔开两段文本）；`[PAD]` 用来把批次里较短的行补齐，注意力掩码为 0；"
                   "`[UNK]` 代表词表里没有的字符。以 `##` 开头的词片，表示它和前一片属于同一个词。",
    "tok_offsets": "**字符位置（offsets）。** 每个词片都记得自己来自原文的哪几个字符（起–止）；特殊符号不对应任何字符"
                   "（0–0）。这个分词器不区分大小写，还会去掉重音符号，所以 `Test` 和 `test` 的 ID 相同。",

    "pad_header": "一个批次里的填充与截断",
    "pad_intro": "一个批次是一个矩形，每一行必须一样长。短评论用 `[PAD]` 补齐（掩码为 0）；超过 `max_length` 的评论"
                 "会被截掉。填充白白耗费算力，截断则会丢掉文字。",
    "pad_source": "批次里的评论",
    "pad_source_type": "自己输入（每行一条）",
    "pad_source_pick": "从数据集中挑选",
    "pad_texts": "每行一条评论",
    "pad_pick": "数据集里的评论（第 4 页签所选的数据）",
    "pad_maxlen": "max_length（词片数）",
    "pad_mode": "填充方式",
    "mode_longest": "padding=True（补到本批最长）",
    "mode_max_length": "padding=\"max_length\"",
    "mode_dynamic": "动态填充（由 collator 逐批补齐）",
    "mode_help_longest": "每一行都补到本批次最长那一行的长度。",
    "mode_help_max_length": "不管多短，每一行都补到 max_length。",
    "mode_help_dynamic": "分词时先不填充；训练时 DataCollatorWithPadding 把每个批次补到该批最长的一行，"
                         "所以不同批次的宽度不一样。",
    "pad_collator": "collator 每个训练批次的大小",
    "pad_ids_chart": "input_ids（鼠标悬停可看词片）",
    "pad_mask_chart": "attention_mask（1 = 真实词片，0 = 填充）",
    "pad_share": "填充占比",
    "pad_processed": "计算的位置数",
    "pad_real": "真实词片数",
    "pad_compare": "同一批评论，三种填充方式对比",
    "col_mode": "填充方式",
    "col_width": "最宽的一行",
    "col_processed": "计算的位置数",
    "col_padding_share": "填充占比",
    "pad_truncated": "被截断的内容",
    "pad_truncated_row": "第 {row} 条评论被截掉 {n} 个词片（{full} → {kept}）。丢掉的文字：",
    "pad_none_truncated": "没有内容被截掉：每条评论都不超过 {max_length} 个词片。",
    "pad_empty": "请至少添加一条评论。",
    "legend_text": "文本", "legend_special": "特殊符号", "legend_padding": "填充",
    "axis_position": "位置", "axis_row": "评论",

    "map_header": "map 这一步：分词对数据集做了什么",
    "map_intro": "教程用 `dataset.map(tokenize, batched=True)` 给整个数据集分词。`batched=True` 表示每次交给函数"
                 " 1,000 条评论，快速分词器可以一次处理很多文本。处理后，每条样本保留原来的 `text` 和 `label`，"
                 "并新增 `input_ids`、`token_type_ids` 和 `attention_mask`。接着 `set_format(\"torch\", columns=[...])`"
                 " 让选中的列以 PyTorch 张量的形式取出，其余的列（比如原文）则被隐藏。",
    "map_index": "样本编号",
    "map_padding": "tokenize 里的填充方式",
    "map_pad_true": "padding=True（教程的写法）",
    "map_pad_false": "不填充（动态填充，之后由 collator 补齐）",
    "map_before": "map 之前",
    "map_after": "map(tokenize, batched=True) 之后",
    "map_format": "set_format(\"torch\", columns=[...]) 之后",
    "map_columns": "列的变化：{before} → {after} → {formatted}",
    "map_summary": "这条样本有 {real} 个真实词片和 {pad} 个填充：它所在的 map 批次（第 {start}–{end} 条评论）"
                   "被统一补到了其中最长评论的长度，即 {width} 个词片。",
    "map_summary_nopad": "这条样本有 {real} 个词片，暂时没有填充：训练时 collator 会把它和同一训练批次的"
                         "其他评论一起补齐。",
    "map_cost": "隐藏的代价：在 `map` 里写 `padding=True`，短评论就得和同一批 1,000 条里最长的那条看齐，被补到那么长"
                "（最多到 max_length），而模型在每一轮训练里都要为这些填充位置做计算。"
                "第 4 页签会在整个数据集上算出这笔开销。",
    "map_no_data": "先在第 4 页签加载一个数据集，这里就能看到其中的样本。",

    "stats_header": "整个数据集的词片长度",
    "stats_intro": "评论换算成词片有多长？有多少条会在 max_length 处被截断？模型的算力有多少花在了填充上？"
                   "下面用快速分词器把每一条评论都算一遍，结果会被缓存。",
    "ds_source": "数据集",
    "ds_demo": "内置影评",
    "ds_upload": "上传文件",
    "ds_path": "本地路径",
    "ds_hub": "Hugging Face Hub",
    "ds_split": "数据划分",
    "ds_upload_label": "CSV、TSV、JSON Lines、JSON 或 Parquet 文件",
    "ds_column": "文本所在的列",
    "ds_path_label": "服务器上的文件路径，或 aclImdb 文件夹",
    "ds_hub_label": "Hub 数据集 id",
    "ds_strip_html": "先把 <br /> 标签换成换行（与训练时一致）",
    "ds_need_file": "请选择要统计的文件。",
    "ds_need_path": "请输入要统计的路径。",
    "ds_loaded": "共 {n:,} 条评论，来自{source}",
    "ds_skipped": "跳过了 {n:,} 个空行。",
    "stats_maxlen": "max_length（词片数）",
    "stats_batch": "训练批次大小",
    "stats_computing": "正在为 {n:,} 条评论分词……",
    "m_texts": "评论数",
    "m_median": "长度中位数",
    "m_p95": "95% 的评论短于",
    "m_truncated": "被 max_length 截断",
    "m_lost": "丢失的词片",
    "m_lost_help": "共 {total:,} 个词片，丢掉 {lost:,} 个",
    "hist_title": "各长度的评论数量（红线：max_length）",
    "hist_x": "每条评论的词片数",
    "hist_y": "评论数",
    "hist_cut": "会被截断",
    "hist_kept": "放得下",
    "padding_header": "花在填充上的算力占比",
    "scheme_tutorial": "在 map 里 padding=True（教程的写法）",
    "scheme_dynamic": "动态填充，随机组批",
    "scheme_grouped": "动态填充，按长度分组组批",
    "scheme_max_length": "padding=\"max_length\"",
    "col_scheme": "批次的填充方式",
    "col_positions": "每轮计算的位置数",
    "col_waste": "填充占比",
    "padding_explain": "填充占比 = 1 − 真实词片数 ÷ 计算的位置数。教程的写法把每个 map 批次（{map_batch:,} 条评论）"
                       "补到其中最长的一条；动态填充把每个训练批次（{batch} 条）补到该批最长的一条；"
                       "按长度分组则把长度相近的评论放进同一批（即 `group_by_length`）。",
    "stats_error": "无法统计这个数据集：",

    "calc_header": "轮数（epoch）与优化步数（step）",
    "calc_intro": "每做一次优化步，权重就更新一次。一步处理的样本数 = 每个设备的批次大小 × 设备数 × 梯度累积步数。"
                  "Trainer 先数出每轮有多少个批次，再按梯度累积把它们合成步，最后乘以轮数。下面的数字与已安装的 "
                  "transformers Trainer 完全一致。",
    "calc_samples": "训练样本数",
    "calc_batch": "每个设备的批次大小",
    "calc_devices": "设备数（进程数 × 机器数）",
    "calc_accum": "梯度累积步数",
    "calc_epochs": "训练轮数",
    "calc_max_steps": "max_steps（-1 表示按轮数）",
    "calc_drop_last": "丢弃每轮最后不完整的批次（dataloader_drop_last）",
    "calc_use_data": "第 4 页签数据集的训练样本数：{n:,}",
    "calc_use_button": "用这个数",
    "m_samples_per_step": "每步样本数",
    "m_steps_per_epoch": "每轮步数",
    "m_total_steps": "总步数",
    "m_final_epoch": "结束时的轮数",
    "formula_header": "代入你的数字后的公式",
    "f_samples_per_step": "每个优化步的样本数",
    "f_batches_per_device": "每轮批次数（每个设备）",
    "f_steps_per_epoch": "每轮优化步数",
    "f_total_steps": "总优化步数",
    "f_epochs_started": "实际开始的轮数",
    "note_partial_batch": "每轮最后一个批次只有 {n} 个样本。",
    "note_accum_remainder": "梯度累积：{batches} 个批次不能被 {accum} 整除，所以每轮最后一步只累积了 {last} 个批次。",
    "note_repeated": "用 {devices} 个设备时，最后一轮会从本轮开头补上 {n} 个样本，让每个设备拿到同样多的完整批次。",
    "note_dropped": "drop_last 让每轮跳过 {n} 个样本。",
    "note_max_steps": "max_steps 优先于轮数：训练在第 {steps:,} 步停止，此时是第 {epoch:.2f} 轮。",
    "note_fraction": "轮数带小数：最后一轮只跑它 {per_epoch:,} 步中的前 {steps:,} 步。",
    "schedule_header": "Trainer 何时记录日志、评估和保存",
    "sch_logging": "logging_steps",
    "sch_eval_strategy": "eval_strategy",
    "sch_eval_steps": "eval_steps（0 表示与 logging_steps 相同）",
    "sch_save_strategy": "save_strategy",
    "sch_save_steps": "save_steps",
    "sch_limit": "save_total_limit（0 表示全部保留）",
    "sch_best": "load_best_model_at_end",
    "sch_steps_help": "小于 1 的值表示占总步数的比例（0.1 = 每训练十分之一记录一次）。",
    "timeline_title": "各优化步上发生的事件",
    "ev_log": "日志", "ev_eval": "评估", "ev_save": "保存",
    "ev_kept": "保留的检查点", "ev_deleted": "被删除的检查点",
    "col_step": "步",
    "col_epoch": "轮",
    "col_events": "事件",
    "col_checkpoint": "检查点",
    "kept": "保留",
    "deleted": "已删除",
    "every": "每 {n:,} 步",
    "sch_summary": "日志：{log}；评估：{ev}；保存：{save}。共保存 {n} 个检查点，训练结束时剩 {k} 个。",
    "sch_none": "从不",
    "sch_epoch": "每轮结束时",
    "best_note": "load_best_model_at_end 还会额外保留最好的检查点，但哪个最好要等训练完才知道。"
                 "选一个，看看最后会剩下哪些：",
    "best_pick": "假设最好的检查点是",
    "best_left": "最后剩下：{ckpts}",
    "no_events": "没有任何事件：训练结束前既不记录日志，也不评估、不保存。",
    "calc_error": "这组设置行不通：",
    "cut_chars": "输入框最多容纳 {limit:,} 个字符，超出的部分已被截掉。",
    "cut_lines": "只用前 {limit} 条评论，另有 {n} 行没有用上。",
    "cut_line_chars": "有 {n} 行超过 {limit:,} 个字符，超出的部分已被截掉。",
    "pick_limit": "最多选 {limit} 条评论。",
    "timeline_truncated": "一共 {n:,} 个事件：时间线和下表只列出最前和最后的一部分（{shown:,} 个）。",
}

TEXTS = {"en": EN, "zh": ZH}


def text(lang: str, key: str, **values) -> str:
    """The text for ``key`` in ``lang`` ("en" or "zh"), with ``values`` filled in (English as fallback)."""
    table = TEXTS.get(lang, EN)
    template = table.get(key, EN.get(key, key))
    return template.format(**values) if values else template
