"""Training: prior matching and losses (YOLACT / YOLACT++ / panoptic YOLACT / PCV), the
training loop, fine-tuning from official YOLACT weights. Never imports rclpy.

    from segmentation_ros.data.datasets import open_dataset
    from segmentation_ros.train.models import build_training_model
    from segmentation_ros.train.trainer import TrainConfig, Trainer

    dataset = open_dataset("synthetic:data/synth")
    model = build_training_model("yolact_mobilenetv3", dataset.categories)
    Trainer(model, dataset, out_dir="runs/a", config=TrainConfig(steps=2000)).fit()

Modules: `config` (settings, schedule), `trainer` (the loop), `distributed` (DDP under
torchrun), `precision` (bf16 / fp16 autocast, gradient scaler), `logs` (CSV, TensorBoard,
progress bar), `checkpoints` (portable training checkpoints), `recipes` (YAML recipe files).
The command line is `segmentation-ros-train` (`segmentation_ros.tools.train`).
"""
